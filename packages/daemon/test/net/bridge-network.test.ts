import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BridgeNetwork } from '../../src/net/bridge-network.js';

/** A bridge and subnet of this test alone (the e2e daemons use dt<pid><n> on 10.1xx.n.0/24). */
const BRIDGE = `bn${process.pid % 100000}`;
const SUBNET = `10.99.${process.pid % 250}.0/24`;
const quiet = { info() {}, warn() {} };

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8' });
}

/** Whether a TCP server in the namespace is reached from the host at the sandbox's address over the bridge. */
async function answersFromHost(ns: string, address: string): Promise<boolean> {
  const server = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', SERVER], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  try {
    await once(server.stdout, 'data');
    const socket = connect({ host: address, port: 7070 });
    const [reply] = (await Promise.race([once(socket, 'data'), once(socket, 'error')])) as [Buffer | Error];
    socket.destroy();
    return Buffer.isBuffer(reply) && reply.toString() === 'here';
  } finally {
    server.kill('SIGKILL');
    await once(server, 'exit');
  }
}
const SERVER = "require('net').createServer((s) => s.end('here')).listen(7070, '0.0.0.0', () => console.log('up'))";

describe('BridgeNetwork.reattach (a sandbox resumed a moment after its pause)', () => {
  let net: BridgeNetwork;
  let files: string;
  const spec = {
    sandboxId: 'reattachtest0001',
    address: '',
    hostname: 'reattach',
    network: { policy: 'none' as const, allow: [] },
  };

  before(async () => {
    files = await mkdtemp(join(tmpdir(), 'den-net-'));
    net = new BridgeNetwork({
      bridge: BRIDGE,
      subnet: SUBNET,
      deny: [],
      filesDir: (id) => join(files, id),
      log: quiet,
    });
    await net.start();
    spec.address = net.allocateAddress([]);
  });
  after(async () => {
    await net.tearDown(spec.sandboxId, spec.address);
    await net.removeHostNetwork();
    await rm(files, { recursive: true, force: true });
  });

  it('puts back the address and route runsc took, in the same namespace', async () => {
    const { netnsPath } = await net.setUp(spec);
    const ns = net.netnsName(spec.sandboxId);
    const inode = statSync(netnsPath).ino;
    // What runsc does when it boots: the address and routes leave eth0 for its own network stack.
    ip('-n', ns, 'addr', 'flush', 'dev', 'eth0');
    assert.doesNotMatch(ip('-n', ns, '-4', 'addr', 'show', 'eth0'), /inet /);
    const again = await net.reattach(spec);
    assert.equal(again.netnsPath, netnsPath);
    assert.equal(statSync(netnsPath).ino, inode, 'the namespace was kept, not made again');
    assert.match(
      ip('-n', ns, '-4', 'addr', 'show', 'eth0'),
      new RegExp(`inet ${spec.address.replaceAll('.', '\\.')}/24`),
    );
    assert.match(ip('-n', ns, 'route'), new RegExp(`default via ${net.gateway.replaceAll('.', '\\.')} dev eth0`));
    assert.ok(await answersFromHost(ns, spec.address));
  });

  it('sets everything up anew when the namespace is gone (cleared after the pause)', async () => {
    await net.tearDown(spec.sandboxId, spec.address);
    const { netnsPath } = await net.reattach(spec);
    assert.ok(statSync(netnsPath).isFile());
    assert.ok(await answersFromHost(net.netnsName(spec.sandboxId), spec.address));
  });
});

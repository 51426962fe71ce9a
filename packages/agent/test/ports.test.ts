import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { listeningSockets } from '../src/ports.js';
import { agentForSuite } from './agent-fixture.js';

function listen(host: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => resolve(srv));
  });
}

describe('agent: listening ports', () => {
  const agent = agentForSuite('ports');

  it('lists TCP sockets in LISTEN state with their bound address, not connected ones', async () => {
    const any = await listen('0.0.0.0');
    const loop = await listen('127.0.0.1');
    try {
      const anyPort = (any.address() as { port: number }).port;
      const loopPort = (loop.address() as { port: number }).port;
      const ports = await agent().client.listPorts();
      assert.ok(
        ports.some((p) => p.port === anyPort && p.address === '0.0.0.0'),
        JSON.stringify(ports),
      );
      assert.ok(ports.some((p) => p.port === loopPort && p.address === '127.0.0.1'));
      any.close();
      await new Promise((r) => setTimeout(r, 50));
      assert.ok(!(await agent().client.listPorts()).some((p) => p.port === anyPort), 'a closed socket disappears');
    } finally {
      any.close();
      loop.close();
    }
  });

  it('parses /proc/net/tcp and tcp6 formats, including v4-mapped and loopback v6 addresses', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'den-procnet-'));
    try {
      await mkdir(dir, { recursive: true });
      const header =
        '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n';
      await writeFile(
        join(dir, 'tcp'),
        `${header}   0: 00000000:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n` +
          '   1: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1\n' +
          '   2: 0100007F:0BB9 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 3 1\n',
      );
      await writeFile(
        join(dir, 'tcp6'),
        `${header}   0: 00000000000000000000000000000000:1389 00000000000000000000000000000000:0000 0A 0 0 0 0 0 4 1\n` +
          '   1: 00000000000000000000000001000000:138A 00000000000000000000000000000000:0000 0A 0 0 0 0 0 5 1\n' +
          '   2: 0000000000000000FFFF00000100007F:138B 00000000000000000000000000000000:0000 0A 0 0 0 0 0 6 1\n',
      );
      assert.deepEqual(await listeningSockets(dir), [
        { port: 3000, address: '127.0.0.1' },
        { port: 5001, address: '::' },
        { port: 5002, address: '::1' },
        { port: 5003, address: '::ffff:127.0.0.1' },
        { port: 8000, address: '0.0.0.0' },
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Sandbox } from '@den/sdk';
import { type FakeInternet, startFakeInternet } from '../src/fake-internet.js';
import { destroyDaemon, startDaemon, type TestDaemon } from '../src/harness.js';
import { hostNetworkLeftovers, leftovers, networkLeftovers } from '../src/leaks.js';

/** `curl` from inside a sandbox: the HTTP status, or 000 plus curl's reason when nothing answered. */
async function curl(sbx: Sandbox, url: string): Promise<string> {
  const r = await sbx.commands.run(['curl', '-s', '-m', '4', '-o', '/dev/null', '-w', '%{http_code} %{errormsg}', url]);
  return r.stdout.trim();
}
const reached = (result: string) => result.startsWith('200');

async function assertReaches(sbx: Sandbox, url: string, why = ''): Promise<void> {
  const r = await curl(sbx, url);
  assert.ok(reached(r), `${sbx.name} did not reach ${url}: ${r} ${why}`);
}

async function assertBlocked(sbx: Sandbox, url: string, why = ''): Promise<void> {
  const r = await curl(sbx, url);
  assert.ok(!reached(r), `${sbx.name} reached ${url}: ${r} ${why}`);
}

/** A TCP server on every host address (0.0.0.0): a host service sandboxes must not reach. */
function hostService(): Promise<Server> {
  return new Promise((resolve) => {
    const srv = createServer((s) => s.end('HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nhost'));
    srv.listen(0, '0.0.0.0', () => resolve(srv));
  });
}

function hostAddress(): string {
  const routes = JSON.parse(execFileSync('ip', ['-j', '-4', 'addr', 'show', 'scope', 'global'], { encoding: 'utf8' }));
  for (const link of routes as { ifname: string; addr_info: { local: string }[] }[]) {
    if (link.ifname.startsWith('dt') || link.ifname.startsWith('vtw')) continue;
    if (link.addr_info[0]) return link.addr_info[0].local;
  }
  return '127.0.0.1';
}

for (const runtime of ['runsc', 'runc'] as const) {
  describe(`sandbox networks and egress policy on ${runtime}`, () => {
    let world: FakeInternet;
    let daemon: TestDaemon;
    let full: Sandbox;
    let none: Sandbox;
    let listed: Sandbox;
    let host: Server;
    const gateway = () => execFileSync('ip', ['-j', '-4', 'addr', 'show', 'dev', daemon.bridge], { encoding: 'utf8' });

    before(async () => {
      world = await startFakeInternet();
      host = await hostService();
      daemon = await startDaemon({ env: { DEN_DNS_UPSTREAMS: world.dnsUpstream } });
      const opts = { url: daemon.url, runtime, memoryMB: 512 } as const;
      [full, none, listed] = await Promise.all([
        Sandbox.create({ ...opts, name: 'full', network: { policy: 'full' } }),
        Sandbox.create({ ...opts, name: 'none', network: { policy: 'none' } }),
        Sandbox.create({ ...opts, name: 'listed', network: { policy: 'allowlist', allow: ['allowed.den-test'] } }),
      ]);
    });
    after(async () => {
      host?.close();
      if (daemon) {
        await destroyDaemon(daemon);
        assert.deepEqual(hostNetworkLeftovers(daemon.bridge), [], 'the last sandbox gone, the daemon leaves no bridge');
      }
      await world?.close();
    });

    test('the host reaches the fake world (the blocks below are den, not the test setup)', () => {
      const out = execFileSync('curl', ['-s', '-m', '4', `http://${world.metadata}/`], { encoding: 'utf8' });
      assert.equal(out, `fake-internet ${world.metadata}`);
    });

    test('full: reaches outside by address and by name through den resolver', async () => {
      await assertReaches(full, `http://${world.web}/`);
      await assertReaches(full, 'http://allowed.den-test/');
      await assertReaches(full, 'http://blocked.den-test/', 'full allows every name');
      const resolv = await full.files.read('/etc/resolv.conf');
      assert.match(resolv, /^nameserver 10\./);
    });

    test('every policy: no metadata range, no host services, no other sandbox', async () => {
      const info = await full.info();
      const gw = (JSON.parse(gateway()) as { addr_info: { local: string }[] }[])[0]!.addr_info[0]!.local;
      const hostPort = (host.address() as { port: number }).port;
      const daemonPort = new URL(daemon.url).port;
      const noneAddress = (await none.info()).network.address!;
      await none.commands.run('nohup python3 -m http.server 8000 >/dev/null 2>&1 &');
      for (const sbx of [full, none, listed]) {
        for (const url of [
          `http://${world.metadata}/latest/meta-data/`,
          `http://${gw}:${hostPort}/`,
          `http://${gw}:${daemonPort}/v1/health`,
          `http://${hostAddress()}:${hostPort}/`,
          `http://${gw}:22/`,
        ]) {
          const r = await curl(sbx, url);
          assert.ok(!reached(r), `${(await sbx.info()).name} reached ${url}: ${r}`);
        }
      }
      const r = await curl(full, `http://${noneAddress}:8000/`);
      assert.ok(!reached(r), `a sandbox reached another one: ${r}`);
      // ...while the host (the preview proxy's side) reaches it.
      const direct = execFileSync(
        'curl',
        ['-s', '-m', '4', '-o', '/dev/null', '-w', '%{http_code}', `http://${noneAddress}:8000/`],
        {
          encoding: 'utf8',
        },
      );
      assert.equal(direct, '200');
      assert.ok(info.network.address);
    });

    test('none: nothing leaves the sandbox, names do not resolve', async () => {
      await assertBlocked(none, `http://${world.web}/`);
      const lookup = await none.commands.run('getent hosts allowed.den-test');
      assert.notEqual(lookup.exitCode, 0);
      const lo = await none.commands.run(
        "python3 -c \"import socket;s=socket.socket();s.bind(('127.0.0.1',0));s.listen();c=socket.create_connection(s.getsockname());print('lo ok')\"",
      );
      assert.equal(lo.stdout, 'lo ok\n', 'loopback works');
    });

    test('allowlist: allowed names resolve and connect, others do not, CIDRs work', async () => {
      await assertReaches(listed, 'http://allowed.den-test/');
      const blocked = await listed.commands.run('getent hosts blocked.den-test');
      assert.notEqual(blocked.exitCode, 0, 'a name not on the list does not resolve');
      await assertBlocked(listed, `http://${world.other}/`, 'an address not on the list is blocked');
      await assertBlocked(listed, 'http://api.allowed.den-test/', 'subdomains need *.');
    });

    test('the policy changes while the sandbox runs', async () => {
      await listed.network.update({ policy: 'allowlist', allow: [`${world.other}/32`, '*.allowed.den-test'] });
      await assertReaches(listed, `http://${world.other}/`);
      await assertReaches(listed, 'http://api.allowed.den-test/');
      await listed.network.update({ policy: 'none' });
      await assertBlocked(listed, `http://${world.other}/`);
      await listed.network.update({ policy: 'full' });
      await assertReaches(listed, `http://${world.other}/`);
      await listed.network.update({ policy: 'allowlist', allow: ['allowed.den-test'] });
      await assertBlocked(listed, `http://${world.other}/`);
    });

    test('bad policies are refused with what to fix', async () => {
      await assert.rejects(listed.network.update({ policy: 'allowlist', allow: ['http://x.org/'] }), /allow|entry/i);
      await assert.rejects(listed.network.update({ policy: 'full', allow: ['x.org'] }), /only apply to policy/);
      await assert.rejects(
        Sandbox.create({ url: daemon.url, runtime, network: { policy: 'allowlist', allow: ['10.0.0.1/8'] } }),
        /host bits|10\.0\.0\.0\/8/,
      );
    });

    test('address and policy survive stop/start and a daemon restart', async () => {
      const before = (await listed.info()).network.address;
      await listed.stop();
      await listed.start();
      assert.equal((await listed.info()).network.address, before);
      await assertReaches(listed, 'http://allowed.den-test/');
      await assertBlocked(listed, `http://${world.other}/`);
      daemon = await daemon.restart();
      const again = await Sandbox.connect('listed', { url: daemon.url });
      assert.equal((await again.info()).network.address, before);
      await assertReaches(again, 'http://allowed.den-test/', 'the resolver knows the sandbox again');
      await assertBlocked(again, `http://${world.other}/`, 'the rules are still there');
      const fullAgain = await Sandbox.connect('full', { url: daemon.url });
      await assertReaches(fullAgain, `http://${world.web}/`);
    });

    test('removing sandboxes leaves no namespace, port or rule behind', async () => {
      for (const name of ['full', 'none', 'listed']) await (await Sandbox.connect(name, { url: daemon.url })).kill();
      assert.deepEqual(networkLeftovers(daemon.bridge), []);
      assert.deepEqual(leftovers(daemon.home), []);
    });
  });
}

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DenError } from '@den/shared';
import { domainAllowed, parseAllowEntry, parseAllowList } from '../../src/net/allow-entries.js';

function rejects(entry: string, messagePart: RegExp): void {
  assert.throws(
    () => parseAllowEntry(entry),
    (err: unknown) => {
      assert.ok(err instanceof DenError);
      assert.equal(err.code, 'INVALID_ARGUMENT');
      assert.match(err.message, messagePart);
      return true;
    },
  );
}

describe('parseAllowEntry', () => {
  it('turns an IPv4 address into a /32', () => {
    assert.deepEqual(parseAllowEntry('10.1.2.3'), { kind: 'cidr', cidr: '10.1.2.3/32' });
    assert.deepEqual(parseAllowEntry(' 192.168.1.10 '), { kind: 'cidr', cidr: '192.168.1.10/32' });
  });

  it('keeps a CIDR whose host bits are zero', () => {
    assert.deepEqual(parseAllowEntry('10.0.0.0/8'), { kind: 'cidr', cidr: '10.0.0.0/8' });
    assert.deepEqual(parseAllowEntry('0.0.0.0/0'), { kind: 'cidr', cidr: '0.0.0.0/0' });
    assert.deepEqual(parseAllowEntry('1.2.3.4/32'), { kind: 'cidr', cidr: '1.2.3.4/32' });
  });

  it('names the network when host bits are set', () => {
    rejects('10.1.2.3/8', /host bits set: use 10\.0\.0\.0\/8/);
    rejects('192.168.1.77/24', /use 192\.168\.1\.0\/24/);
  });

  it('rejects bad addresses and prefixes', () => {
    rejects('256.1.1.1', /0-255/);
    rejects('1.2.3', /IPv4 address/);
    rejects('1.2.3.4/33', /\/0 to \/32/);
    rejects('1.2.3.4/', /\/0 to \/32/);
    rejects('1.2.3.4/8/8', /a\.b\.c\.d/);
    rejects('010.1.1.1', /leading zeros/);
  });

  it('rejects IPv6 and URLs, saying sandboxes are IPv4-only', () => {
    rejects('2001:db8::/32', /IPv4-only/);
    rejects('::1', /IPv4-only/);
    rejects('https://github.com', /IPv4-only/);
    rejects('github.com:443', /IPv4-only/);
  });

  it('lower-cases domain names and drops the trailing dot', () => {
    assert.deepEqual(parseAllowEntry('Registry.NPMJS.org.'), { kind: 'domain', pattern: 'registry.npmjs.org' });
    assert.deepEqual(parseAllowEntry('_acme-challenge.example.com'), {
      kind: 'domain',
      pattern: '_acme-challenge.example.com',
    });
    assert.deepEqual(parseAllowEntry('localhost'), { kind: 'domain', pattern: 'localhost' });
  });

  it('keeps a leading wildcard', () => {
    assert.deepEqual(parseAllowEntry('*.GitHub.com'), { kind: 'domain', pattern: '*.github.com' });
  });

  it('converts international names to punycode', () => {
    assert.deepEqual(parseAllowEntry('bücher.de'), { kind: 'domain', pattern: 'xn--bcher-kva.de' });
  });

  it('rejects wildcards anywhere but the first label, and a bare wildcard', () => {
    rejects('*', /network "full"/);
    rejects('api.*.github.com', /wrong place/);
    rejects('*github.com', /wrong place/);
    rejects('*.', /network "full"/);
  });

  it('rejects malformed names', () => {
    rejects('', /is empty/);
    rejects('   ', /is empty/);
    rejects('-bad.example.com', /not a valid domain name/);
    rejects('bad-.example.com', /not a valid domain name/);
    rejects('a..b', /not a valid domain name/);
    rejects('exa mple.com', /not a valid domain name/);
    rejects('example.com/path', /not a valid domain name/);
    rejects(`${'a'.repeat(64)}.com`, /at most 63/);
    rejects(`${'a.'.repeat(127)}com`, /not a valid domain name/);
  });
});

describe('domainAllowed', () => {
  const patterns = ['registry.npmjs.org', '*.github.com'];

  it('matches an exact name, ignoring case and a trailing dot', () => {
    assert.equal(domainAllowed('registry.npmjs.org', patterns), true);
    assert.equal(domainAllowed('REGISTRY.npmjs.org.', patterns), true);
    assert.equal(domainAllowed('www.registry.npmjs.org', patterns), false);
    assert.equal(domainAllowed('npmjs.org', patterns), false);
  });

  it('matches every subdomain of a wildcard, but not the apex', () => {
    assert.equal(domainAllowed('api.github.com', patterns), true);
    assert.equal(domainAllowed('a.b.github.com', patterns), true);
    assert.equal(domainAllowed('github.com', patterns), false);
    assert.equal(domainAllowed('evilgithub.com', patterns), false);
    assert.equal(domainAllowed('github.com.evil.net', patterns), false);
  });

  it('allows nothing with no patterns', () => {
    assert.equal(domainAllowed('example.com', []), false);
  });
});

describe('parseAllowList', () => {
  it('splits and de-duplicates entries', () => {
    assert.deepEqual(parseAllowList(['10.0.0.1', '10.0.0.1/32', 'Example.com', 'example.com.', '*.x.org']), {
      cidrs: ['10.0.0.1/32'],
      domains: ['example.com', '*.x.org'],
    });
  });

  it('throws on the first bad entry, naming it', () => {
    assert.throws(() => parseAllowList(['example.com', '10.0.0.1/8']), /"10\.0\.0\.1\/8" has host bits set/);
  });
});

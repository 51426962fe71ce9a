import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PreviewTarget } from '../../src/proxy/preview-proxy.js';
import { CachedPreviewResolver } from '../../src/proxy/target-cache.js';

function counting(target: PreviewTarget) {
  const calls: string[] = [];
  return {
    calls,
    resolver: {
      async resolve(ref: string, port: number): Promise<PreviewTarget> {
        calls.push(`${ref}:${port}`);
        return { ...target, port };
      },
    },
  };
}

describe('CachedPreviewResolver', () => {
  const target: PreviewTarget = { sandboxId: 'a'.repeat(20), address: '10.0.0.2', port: 0, token: 't' };

  it('answers repeated lookups from memory until the TTL passes', async () => {
    const { calls, resolver } = counting(target);
    const cache = new CachedPreviewResolver(resolver, 50);
    assert.equal((await cache.resolve('web', 8000)).port, 8000);
    await cache.resolve('web', 8000);
    await cache.resolve('web', 3000);
    assert.deepEqual(calls, ['web:8000', 'web:3000']);
    await new Promise((r) => setTimeout(r, 60));
    await cache.resolve('web', 8000);
    assert.deepEqual(calls, ['web:8000', 'web:3000', 'web:8000']);
  });

  it('forgets every entry of a sandbox at once, whatever ref found it', async () => {
    const { calls, resolver } = counting(target);
    const cache = new CachedPreviewResolver(resolver, 60_000);
    await cache.resolve('web', 8000);
    await cache.resolve(target.sandboxId, 8000);
    cache.forget(target.sandboxId);
    await cache.resolve('web', 8000);
    await cache.resolve(target.sandboxId, 8000);
    assert.equal(calls.length, 4);
  });

  it('keeps a wake time only for the request that woke the sandbox', async () => {
    const { resolver } = counting({ ...target, wokeAt: 123 });
    const cache = new CachedPreviewResolver(resolver, 60_000);
    assert.equal((await cache.resolve('web', 8000)).wokeAt, 123);
    assert.equal((await cache.resolve('web', 8000)).wokeAt, undefined);
  });

  it('does not remember failures', async () => {
    let fail = true;
    const cache = new CachedPreviewResolver({
      async resolve() {
        if (fail) throw new Error('not running');
        return target;
      },
    });
    await assert.rejects(cache.resolve('web', 1), /not running/);
    fail = false;
    assert.equal((await cache.resolve('web', 1)).address, '10.0.0.2');
  });
});

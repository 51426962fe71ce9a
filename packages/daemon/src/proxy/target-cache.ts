import type { PreviewResolver, PreviewTarget } from './preview-proxy.js';

/**
 * Remembers preview targets for a short while instead of looking the sandbox up in the database on every request.
 * Entries of a sandbox are forgotten the moment it stops, pauses or is deleted, or its preview settings change (the
 * daemon calls `forget`), so a request never goes to a sandbox that is not there or past a changed token rule.
 */
export class CachedPreviewResolver implements PreviewResolver {
  private readonly entries = new Map<string, { target: PreviewTarget; until: number }>();

  constructor(
    private readonly inner: PreviewResolver,
    private readonly ttlMs = 1_000,
  ) {}

  async resolve(ref: string, port: number): Promise<PreviewTarget> {
    const hit = this.peek(ref, port);
    if (hit) return hit;
    const key = `${ref}|${port}`;
    const target = await this.inner.resolve(ref, port);
    // A target that just woke the sandbox carries its wake time for this request only.
    const { wokeAt: _wokeAt, ...lasting } = target;
    this.entries.set(key, { target: lasting, until: Date.now() + this.ttlMs });
    return target;
  }

  /** The remembered target, without a lookup (the proxy's fast lane stays synchronous on a hit). */
  peek(ref: string, port: number): PreviewTarget | undefined {
    const hit = this.entries.get(`${ref}|${port}`);
    return hit && hit.until > Date.now() ? hit.target : undefined;
  }

  /** Drops every entry of a sandbox (by id; entries made by name carry the id in their target). */
  forget(sandboxId: string): void {
    for (const [key, { target }] of this.entries) if (target.sandboxId === sandboxId) this.entries.delete(key);
  }
}

import { DEN_VERSION, type Image, type Status } from '@den/shared';
import type { ImageCatalog, Runtime, RuntimeName } from './ports.js';
import type { SandboxService } from './sandbox-service.js';

/** Daemon health for `den status`: runtime versions, sandbox counts, database. */
export class StatusService {
  private readonly startedAt = Date.now();

  constructor(
    private readonly deps: {
      sandboxes: SandboxService;
      images: ImageCatalog;
      /** every runtime den knows, available or not, with the version probed at start */
      runtimes: { name: RuntimeName; runtime: Runtime | undefined; version: string | null }[];
      database: string;
    },
  ) {}

  async status(): Promise<Status> {
    return {
      version: DEN_VERSION,
      uptimeMs: Date.now() - this.startedAt,
      runtimes: this.deps.runtimes.map((r) => ({
        name: r.name,
        available: r.runtime !== undefined,
        version: r.version,
      })),
      sandboxes: await this.deps.sandboxes.counts(),
      warmPool: await this.warmPool(),
      database: this.deps.database,
    };
  }

  private async warmPool(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const r of await this.deps.sandboxes.pooled()) {
      if (r.state !== 'running') continue;
      const key = `${r.image}/${r.runtime}`;
      out[key] = (out[key] ?? 0) + 1;
    }
    return out;
  }

  images(): Promise<Image[]> {
    return this.deps.images.list();
  }
}

/**
 * Preview URLs of sandbox ports, as users reach them through den's preview proxy:
 * host form `http://<port>-<sandboxId>.<domain>:<den's port>/` and path form `http://<den>/proxy/<sandboxId>/<port>/`.
 * The address of den is known only once the daemon listens (port 0 in tests), hence `setOrigin`.
 */
export class PreviewUrls {
  private origin = { host: '127.0.0.1', port: 0 };

  constructor(readonly domain: string) {}

  setOrigin(host: string, port: number): void {
    this.origin = { host: host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host, port };
  }

  /** `8000-<id>.localhost:7070`: what E2B's getHost returns (host and port, no scheme). */
  host(sandboxId: string, port: number): string {
    return `${port}-${sandboxId}.${this.domainWithPort()}`;
  }

  /** `localhost:7070`: the part of preview hosts after `<port>-<id>.` */
  domainWithPort(): string {
    return `${this.domain}${this.portSuffix()}`;
  }

  hostUrl(sandboxId: string, port: number): string {
    return `http://${this.host(sandboxId, port)}/`;
  }

  pathUrl(sandboxId: string, port: number): string {
    const host = this.origin.host.includes(':') ? `[${this.origin.host}]` : this.origin.host;
    return `http://${host}${this.portSuffix()}/proxy/${sandboxId}/${port}/`;
  }

  private portSuffix(): string {
    return this.origin.port === 80 || this.origin.port === 0 ? '' : `:${this.origin.port}`;
  }
}

import { DenError } from '@den/shared';
import { pino } from 'pino';
import { resolveConfig } from './config.js';
import { wire } from './wiring.js';

/** Entry point: `node main.js [--home DIR] [--listen HOST:PORT] [--store DIR] [--config FILE]`. */
async function main(): Promise<void> {
  const config = resolveConfig(process.argv.slice(2));
  const daemon = await wire(config, pino({ level: config.logLevel }));
  const address = await daemon.app.listen({ host: config.host, port: config.port });
  daemon.app.log.info({ address, home: config.home, store: config.store }, 'den daemon listening');
  let closing = false;
  const stop = (signal: string) => {
    if (closing) return;
    closing = true;
    daemon.app.log.info({ signal }, 'shutting down; sandboxes keep running');
    void daemon.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => {
  const message =
    err instanceof DenError ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err);
  console.error(`den daemon: ${message}`);
  process.exit(1);
});

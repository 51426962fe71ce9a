import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium } from 'playwright-core';

/** Debian's chromium, installed by scripts/install.sh; playwright-core drives it (no browser download). */
export const CHROMIUM = '/usr/bin/chromium';

/**
 * Flags for a headless Chromium run as root on a machine without a display, GPU or internet: `--no-sandbox` because
 * Chromium's own sandbox refuses to run as root; QUIC, sync, component updates and background networking off so
 * the browser makes no request the test did not ask for.
 */
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Why the browser tests cannot run here, or undefined when they can; in CI (CI=true) a missing browser fails. */
export function browserUnavailable(): string | undefined {
  if (existsSync(CHROMIUM)) return undefined;
  const reason = `${CHROMIUM} is missing: run scripts/install.sh (it installs Debian's chromium)`;
  if (process.env.CI === 'true') throw new Error(`the browser tests must run in CI, but ${reason}`);
  return reason;
}

/** A headless Chromium with a fresh profile; `close()` ends the browser and removes the profile. */
export async function launchBrowser(): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  const profile = await mkdtemp(join(tmpdir(), 'den-chromium-'));
  try {
    // A persistent context is how playwright takes a --user-data-dir of our choosing.
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1024, height: 640 },
    });
    return {
      context,
      async close() {
        await context.close();
        await rm(profile, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await rm(profile, { recursive: true, force: true });
    throw err;
  }
}

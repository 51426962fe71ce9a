import { DenClient } from '@den/sdk';

/**
 * What an E2B application needs to use den instead of E2B, and nothing more: the two URLs and a den API key, as
 * the `e2b` SDK reads them from `E2B_API_URL`, `E2B_SANDBOX_URL` and `E2B_API_KEY`.
 */
export interface E2BConnection {
  apiUrl: string;
  sandboxUrl: string;
  apiKey: string;
}

/** Makes a den API key on `daemon` and returns the e2b SDK's connection options for it. */
export async function e2bConnection(daemon: { url: string }, keyName = 'e2b-e2e'): Promise<E2BConnection> {
  const { key } = await new DenClient({ url: daemon.url }).createApiKey(keyName);
  return { apiUrl: `${daemon.url}/e2b`, sandboxUrl: `${daemon.url}/e2b`, apiKey: key };
}

/** The same connection as the environment variables an unmodified E2B application reads. */
export function e2bEnv(conn: E2BConnection): Record<'E2B_API_URL' | 'E2B_SANDBOX_URL' | 'E2B_API_KEY', string> {
  return { E2B_API_URL: conn.apiUrl, E2B_SANDBOX_URL: conn.sandboxUrl, E2B_API_KEY: conn.apiKey };
}

/**
 * The envd access token the e2b SDK keeps for a sandbox it created or connected to (it sends it as
 * `X-Access-Token`); the SDK declares the field protected, tests read it to make raw envd calls.
 */
export function envdAccessTokenOf(sandbox: object): string | undefined {
  return (sandbox as { envdAccessToken?: string }).envdAccessToken;
}

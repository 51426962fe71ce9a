/**
 * npm install steps against the shared cache. The cache is a read-only bind mount, and npm cannot use it in place:
 * every cache lookup of registry metadata compacts the index bucket it read (cacache `index.compact`, called by
 * make-fetch-happen's CacheEntry.find), which writes a temp file under `<cache>/tmp` and renames it over the
 * bucket; on a read-only cache the lookup fails and `npm install --offline` reports ENOTCACHED. (Tarballs are read
 * by integrity and never compact, so `npm ci` alone would work.) So the first step builds a writable cache beside
 * it: a copy of the small index (a few MB) plus a symlink to the read-only content store, which npm only reads
 * when offline. npm's logs then land in the writable cache as well.
 */
import type { Step } from './types.js';

/** Writable per-sandbox npm cache; /tmp is writable by the sandbox user and not part of the project. */
export const WRITABLE_NPM_CACHE = '/tmp/den-npm-cache';

/** The shell program of the preparation step; $1 = the shared npm cache, $2 = the writable one. */
const PREPARE_CACHE_SCRIPT = [
  'set -e',
  'shared="$1/_cacache"; own="$2/_cacache"',
  '[ -d "$shared/index-v5" ] || { echo "the shared npm cache $1 is empty; fill it on the host with scripts/package-cache.sh" >&2; exit 1; }',
  'mkdir -p "$own/tmp"',
  'rm -rf "$own/index-v5" "$own/content-v2"',
  'cp -R "$shared/index-v5" "$own/index-v5"',
  'ln -s "$shared/content-v2" "$own/content-v2"',
].join('\n');

export interface NpmInstallInput {
  cacheDir: string;
  /** package-lock.json or npm-shrinkwrap.json is present: install exactly what it pins */
  hasLockfile: boolean;
}

export function npmInstallSteps({ cacheDir, hasLockfile }: NpmInstallInput): Step[] {
  return [
    { argv: ['sh', '-c', PREPARE_CACHE_SCRIPT, 'den-npm-cache', `${cacheDir}/npm`, WRITABLE_NPM_CACHE], env: {} },
    {
      // --include=dev: a dev server needs the devDependencies (vite is one) even if NODE_ENV=production is set.
      argv: [
        'npm',
        hasLockfile ? 'ci' : 'install',
        '--offline',
        '--cache',
        WRITABLE_NPM_CACHE,
        '--include=dev',
        '--no-audit',
        '--no-fund',
        '--no-update-notifier',
      ],
      env: {},
    },
  ];
}

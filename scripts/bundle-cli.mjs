// Bundles the compiled CLI into one ES module, packages/cli/dist/den.bundle.mjs, which bin/den runs. Loading the
// CLI's ~100 modules (commander, the SDK, ws) took ~300 ms of every `den` command on a 2-core VM; one file takes a
// fraction of that (measured `den --version`: 0.45-0.64 s -> 0.18-0.28 s). bin/den falls back to the unbundled
// dist/src/main.js when the bundle is missing.
import { build } from 'esbuild';

await build({
  entryPoints: ['packages/cli/dist/src/main.js'],
  outfile: 'packages/cli/dist/den.bundle.mjs',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: 'linked',
  logLevel: 'warning',
  // CommonJS dependencies (ws, commander's helpers) call require() for Node built-ins: an ES module has none.
  banner: {
    js: "import { createRequire as denCreateRequire } from 'node:module'; const require = denCreateRequire(import.meta.url);",
  },
});

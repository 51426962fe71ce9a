// Bundles the compiled agent into one ES module, packages/agent/dist/agent.bundle.mjs. Inside gVisor every file
// the agent loads costs gofer round trips: loading ~25 modules took ~170 ms of the agent's start, one file takes a
// fraction of that. node-pty stays external (a native addon, loaded lazily on the first PTY).
import { build } from 'esbuild';

await build({
  entryPoints: ['packages/agent/dist/src/main.js'],
  outfile: 'packages/agent/dist/agent.bundle.mjs',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['node-pty'],
  sourcemap: 'linked',
  logLevel: 'warning',
});

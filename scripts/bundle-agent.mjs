// Bundles the compiled agent into one ES module, packages/agent/dist/agent.bundle.mjs. Inside gVisor every file
// the agent loads costs gofer round trips: loading ~25 modules took ~170 ms of the agent's start, one file takes a
// fraction of that. node-pty stays external (a native addon, loaded lazily on the first PTY).
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
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

// den-spawn (packages/agent/native/den-spawn.c): the agent's process starter, static so it runs in any image.
// Without a C compiler the agent still works: it then forks itself for every process (slower inside gVisor).
try {
  execFileSync(
    'cc',
    ['-O2', '-Wall', '-Wextra', '-static', '-o', 'packages/agent/dist/den-spawn', 'packages/agent/native/den-spawn.c'],
    { stdio: 'inherit' },
  );
} catch (err) {
  rmSync('packages/agent/dist/den-spawn', { force: true });
  console.warn(`den-spawn not built (${err.message}); the agent will fork itself to start processes`);
}

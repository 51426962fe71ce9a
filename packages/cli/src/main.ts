#!/usr/bin/env node
import { runCli } from './cli.js';

// A closed pipe (`den ls | head -1`) is not an error worth a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
}

const code = await runCli(process.argv.slice(2));
// Exit explicitly once stdout is flushed: idle keep-alive sockets, stdin or a WebSocket must not hold the process.
process.stdout.write('', () => process.exit(code));

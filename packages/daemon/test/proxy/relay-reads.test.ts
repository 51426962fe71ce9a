import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { relayReads } from '../../src/proxy/relay-reads.js';

const MiB = 1024 * 1024;

function listen(server: Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)),
  );
}

describe('relayReads', () => {
  const servers: Server[] = [];
  after(() => {
    for (const s of servers) s.close();
  });

  it('relays a bulk transfer to a slow reader byte for byte (a buffer whose bytes wait in a queue is never reused)', async () => {
    // Random bytes: a reused buffer would overwrite queued bytes with later ones, and the digest would differ.
    const payload = randomBytes(24 * MiB);
    const source = createServer((s) => s.end(payload));
    servers.push(source);
    const sourcePort = await listen(source);
    const readSizes: number[] = [];
    // A client socket that takes 64 MiB before it asks to wait: reading goes on while earlier bytes are still queued,
    // which is when reusing a buffer too early would corrupt them (with Node's 16 KiB default it is rarely the case).
    const relay = createServer({ highWaterMark: 64 * MiB }, (client) => {
      const upstream: Socket = connect({
        host: '127.0.0.1',
        port: sourcePort,
        onread: relayReads((bytes) => {
          readSizes.push(bytes.length);
          const flowing = client.write(bytes);
          if (!flowing) client.once('drain', () => upstream.resume());
          return { consumed: client.writableLength === 0, pause: !flowing };
        }),
      });
      upstream.on('end', () => client.end());
    });
    servers.push(relay);
    const relayPort = await listen(relay);

    const received = createHash('sha256');
    let total = 0;
    await new Promise<void>((resolve, reject) => {
      const sink = connect({ host: '127.0.0.1', port: relayPort });
      sink.on('data', (chunk: Buffer) => {
        received.update(chunk);
        total += chunk.length;
        // A slow reader now and then: the relay's writes queue up and reading pauses.
        if (total % (4 * MiB) < chunk.length) {
          sink.pause();
          void sleep(20).then(() => sink.resume());
        }
      });
      sink.on('end', resolve);
      sink.on('error', reject);
    });
    assert.equal(total, payload.length);
    assert.equal(received.digest('hex'), createHash('sha256').update(payload).digest('hex'));
    assert.ok(
      readSizes.some((n) => n > 64 * 1024),
      `reads grow past 64 KiB during a bulk transfer (largest ${Math.max(...readSizes)})`,
    );
  });
});

import type { Readable } from 'node:stream';
import { createParser, type EventSourceMessage } from 'eventsource-parser';

/** The `data` of each Server-Sent Event of a response body, until the body or an `end` event ends it. */
export async function* sseData(body: Readable): AsyncGenerator<string> {
  const queue: EventSourceMessage[] = [];
  const parser = createParser({ onEvent: (event) => queue.push(event) });
  try {
    for await (const chunk of body) {
      parser.feed(Buffer.isBuffer(chunk) ? chunk.toString('utf8') : String(chunk));
      while (queue.length) {
        const event = queue.shift()!;
        if (event.event === 'end') return;
        yield event.data;
      }
    }
  } finally {
    body.destroy();
  }
}

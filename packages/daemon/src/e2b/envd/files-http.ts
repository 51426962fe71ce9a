import type { IncomingMessage, ServerResponse } from 'node:http';
import { basename } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { DenError } from '@den/shared';
import { Busboy, type BusboyFileStream } from '@fastify/busboy';
import { httpStatusOf } from './errors.js';
import type { PathResolver } from './paths.js';
import {
  accessTokenOf,
  checkAccessToken,
  checkFileSignature,
  type EnvdSandboxes,
  type EnvdTarget,
  headerValue,
} from './sandbox-context.js';

/** One written file as envd's upload answer lists it. */
interface WriteInfo {
  path: string;
  name: string;
  type: 'file';
}

export interface FilesHttpDeps {
  sandboxes: EnvdSandboxes;
  paths: PathResolver;
}

/**
 * envd's plain HTTP endpoints: `GET /files` (download), `POST /files` (upload, multipart or raw), `GET /health`,
 * `GET /envs`. `url` is the request target with den's `/e2b` prefix already removed.
 */
export async function handlePlainHttp(
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  sandboxId: string,
  deps: FilesHttpDeps,
): Promise<boolean> {
  const route = `${req.method} ${url.pathname}`;
  switch (route) {
    case 'GET /health':
      // A running sandbox answers 204; a stopped one 502, as envd's proxy does for a sandbox that is gone.
      await respond(res, async () => {
        await deps.sandboxes.agentFor(sandboxId);
        res.writeHead(204).end();
      });
      return true;
    case 'GET /envs':
      await respond(res, async () => {
        const target = await fileTarget(req, url, sandboxId, deps, undefined);
        sendJson(res, 200, target.sandbox.env);
      });
      return true;
    case 'GET /files':
      await respond(res, () => download(req, res, url, sandboxId, deps));
      return true;
    case 'POST /files':
      await respond(res, () => upload(req, res, url, sandboxId, deps));
      return true;
  }
  return false;
}

async function download(
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  sandboxId: string,
  deps: FilesHttpDeps,
): Promise<void> {
  const target = await fileTarget(req, url, sandboxId, deps, 'read');
  const path = await deps.paths.resolve(target, url.searchParams.get('path') ?? '');
  const { stream, size } = await target.agent.readFile(path, userOption(target));
  res.writeHead(200, {
    'content-type': 'application/octet-stream',
    'content-length': size,
    'content-disposition': `attachment; filename*=UTF-8''${encodeURIComponent(basename(path))}`,
  });
  if (size === 0) {
    stream.destroy();
    res.end();
    return;
  }
  // A client that goes away mid-download ends the agent stream with it.
  await pipeline(stream, res).catch(() => stream.destroy());
}

async function upload(
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  sandboxId: string,
  deps: FilesHttpDeps,
): Promise<void> {
  const target = await fileTarget(req, url, sandboxId, deps, 'write');
  const pathParam = url.searchParams.get('path') ?? undefined;
  const encoding = (headerValue(req.headers['content-encoding']) ?? 'identity').toLowerCase();
  if (encoding !== 'identity' && encoding !== 'gzip') {
    throw new DenError('INVALID_ARGUMENT', `Content-Encoding ${encoding} is not supported: send identity or gzip`);
  }
  const body: Readable = encoding === 'gzip' ? req.pipe(createGunzip()) : req;
  const contentType = headerValue(req.headers['content-type']) ?? '';
  const written: WriteInfo[] = [];
  const writeOne = async (path: string, source: Readable): Promise<void> => {
    if (written.some((w) => w.path === path)) {
      throw new DenError(
        'INVALID_ARGUMENT',
        `you cannot upload multiple files to the same path '${path}' in one request`,
      );
    }
    const entry = await target.agent.writeFile(path, source, userOption(target));
    written.push({ path: entry.path, name: entry.name, type: 'file' });
  };

  if (/^multipart\/form-data/i.test(contentType)) {
    await readMultipart(body, { ...req.headers, 'content-type': contentType }, async (file, filename) => {
      const path = await deps.paths.resolve(target, pathParam ?? filename ?? '');
      await writeOne(path, file);
    });
  } else {
    if (pathParam === undefined) {
      throw new DenError(
        'INVALID_ARGUMENT',
        'the path query parameter is required for an application/octet-stream upload',
      );
    }
    await writeOne(await deps.paths.resolve(target, pathParam), body);
  }
  if (written.length === 0) throw new DenError('INVALID_ARGUMENT', 'the upload has no part named "file"');
  sendJson(res, 200, written);
}

/**
 * Streams each multipart part named `file` to `onFile`, one after the other: busboy emits the next part only once
 * the current one was read, so nothing is buffered beyond the streams' high-water marks.
 */
function readMultipart(
  body: Readable,
  headers: IncomingMessage['headers'] & { 'content-type': string },
  onFile: (file: Readable, filename: string | undefined) => Promise<void>,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let failed = false;
    let chain = Promise.resolve();
    const fail = (err: unknown): void => {
      if (failed) return;
      failed = true;
      body.unpipe(parser);
      body.resume();
      reject(err);
    };
    let parser: ReturnType<typeof createParser>;
    try {
      parser = createParser(headers);
    } catch (err) {
      reject(new DenError('INVALID_ARGUMENT', `the multipart body is malformed: ${(err as Error).message}`));
      return;
    }
    parser.on('file', (field: string, file: BusboyFileStream, filename: string | undefined) => {
      if (field !== 'file' || failed) {
        file.resume();
        return;
      }
      // Each part is handed on through a PassThrough so an error writing it does not stall busboy.
      const part = new PassThrough({ highWaterMark: 256 * 1024 });
      file.pipe(part);
      chain = chain
        .then(() => (failed ? undefined : onFile(part, filename || undefined)))
        .catch((err) => {
          file.resume();
          fail(err);
        });
    });
    parser.on('error', (err: Error) =>
      fail(new DenError('INVALID_ARGUMENT', `the multipart body is malformed: ${err.message}`)),
    );
    parser.on('finish', () => {
      chain.then(() => {
        if (!failed) resolve();
      }, fail);
    });
    body.on('error', fail);
    body.pipe(parser);
  });
}

function createParser(headers: IncomingMessage['headers'] & { 'content-type': string }) {
  // preservePath: the SDK names each part by its full destination path when writing several files at once.
  return Busboy({ headers, preservePath: true, limits: { fields: 100, parts: 1000 } });
}

/** Sandbox, user and access check of a file URL: X-Access-Token, or a signature made from the token. */
async function fileTarget(
  req: IncomingMessage,
  url: URL,
  sandboxId: string,
  deps: FilesHttpDeps,
  operation: 'read' | 'write' | undefined,
): Promise<EnvdTarget> {
  const sandbox = await deps.sandboxes.resolve(sandboxId);
  const token = accessTokenOf(sandbox);
  const username = url.searchParams.get('username') || undefined;
  if (token) {
    const signature = url.searchParams.get('signature');
    if (signature && operation) {
      checkFileSignature(token, {
        path: url.searchParams.get('path') ?? '',
        operation,
        user: username,
        signature,
        expiration: url.searchParams.get('signature_expiration') ?? undefined,
      });
    } else {
      checkAccessToken(token, headerValue(req.headers['x-access-token']));
    }
  }
  return { sandbox, agent: await deps.sandboxes.agentFor(sandbox.id), user: username };
}

function userOption(target: EnvdTarget): { user?: string } {
  return target.user !== undefined ? { user: target.user } : {};
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const json = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) });
  res.end(json);
}

/** Runs a handler; a failure becomes envd's error body `{code: <status>, message}`. */
async function respond(res: ServerResponse, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (err) {
    const { status, message } = httpStatusOf(err);
    // An upload refused early: drain its body so the keep-alive connection can carry the next request.
    if (!res.req.readableEnded) res.req.resume();
    if (res.headersSent) {
      res.destroy();
      return;
    }
    sendJson(res, status, { code: status, message });
  }
}

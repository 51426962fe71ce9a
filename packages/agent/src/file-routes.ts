import type { ServerHttp2Stream } from 'node:http2';
import { pipeline } from 'node:stream/promises';
import { checkSandboxPath, DenError } from './contract.js';
import type { FileService } from './files.js';
import { readJsonBody, sendJson, sendNoContent } from './http.js';
import type { UserDirectory, UserInfo } from './users.js';

/** HTTP/2 handlers of the file endpoints: parse and validate, then call FileService. */
export interface FileRouteDeps {
  files: FileService;
  users: UserDirectory;
}

/** `GET /files/content?path=`: the file's bytes, with content-length. */
export async function readContent(
  stream: ServerHttp2Stream,
  query: URLSearchParams,
  deps: FileRouteDeps,
): Promise<void> {
  const path = checkSandboxPath(query.get('path') ?? undefined);
  const { handle, size } = await deps.files.openRead(path);
  try {
    if (stream.destroyed) return;
    stream.respond({ ':status': 200, 'content-type': 'application/octet-stream', 'content-length': size });
    if (size === 0) {
      stream.end();
      return;
    }
    // At most the size announced: a file that grows while being read must not overrun content-length.
    await pipeline(
      handle.createReadStream({ start: 0, end: size - 1, highWaterMark: 256 * 1024, autoClose: false }),
      stream,
    );
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/** `PUT /files/content?path=&user=`: the body streams into the file. */
export async function writeContent(
  stream: ServerHttp2Stream,
  query: URLSearchParams,
  deps: FileRouteDeps,
): Promise<void> {
  const path = checkSandboxPath(query.get('path') ?? undefined);
  const owner = resolveUser(query.get('user'), deps);
  sendJson(stream, 200, await deps.files.write(path, stream, owner));
}

export async function listFiles(stream: ServerHttp2Stream, query: URLSearchParams, deps: FileRouteDeps): Promise<void> {
  const path = checkSandboxPath(query.get('path') ?? undefined);
  const depthText = query.get('depth');
  const depth = depthText === null || depthText === '' ? 1 : Number(depthText);
  sendJson(stream, 200, await deps.files.list(path, depth));
}

export async function statFile(stream: ServerHttp2Stream, query: URLSearchParams, deps: FileRouteDeps): Promise<void> {
  sendJson(stream, 200, await deps.files.stat(checkSandboxPath(query.get('path') ?? undefined)));
}

export async function makeDir(stream: ServerHttp2Stream, deps: FileRouteDeps): Promise<void> {
  const body = await readJsonBody(stream);
  const path = checkSandboxPath(body.path);
  sendJson(stream, 200, await deps.files.makeDir(path, resolveUser(body.user, deps)));
}

export async function moveFile(stream: ServerHttp2Stream, deps: FileRouteDeps): Promise<void> {
  const body = await readJsonBody(stream);
  const from = checkSandboxPath(body.from, 'from');
  const to = checkSandboxPath(body.to, 'to');
  sendJson(stream, 200, await deps.files.move(from, to, resolveUser(body.user, deps)));
}

export async function removeFile(
  stream: ServerHttp2Stream,
  query: URLSearchParams,
  deps: FileRouteDeps,
): Promise<void> {
  await deps.files.remove(checkSandboxPath(query.get('path') ?? undefined));
  sendNoContent(stream);
}

function resolveUser(value: unknown, deps: FileRouteDeps): UserInfo {
  if (value !== undefined && value !== null && typeof value !== 'string') {
    throw new DenError('INVALID_ARGUMENT', 'user must be a user name or a numeric uid');
  }
  return deps.users.resolve(value ?? undefined);
}

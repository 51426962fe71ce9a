/**
 * A real S3-compatible server for tests: s3rver (npm devDependency, pure JavaScript, files on disk) run as its own
 * process on 127.0.0.1 with a free port, so its memory does not count in the test process's RSS checks. It speaks
 * PutObject, GetObject, HeadObject, DeleteObject(s), ListObjectsV2 and multipart uploads (not AbortMultipartUpload:
 * an aborted upload's parts stay in its data dir, invisible to reads and listings). Its listings come folder by
 * folder, not in S3's byte order, which S3ObjectStore.list sorts.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { S3ObjectStoreOptions } from '../../src/storage/object-store/index.js';

export interface S3TestServer {
  endpoint: string;
  /** the server's data directory: `<dir>/<bucket>/<key>._S3rver_object` holds an object's bytes */
  dir: string;
  /** options for an S3ObjectStore on a bucket of this server (created at start) */
  options(bucket?: string, prefix?: string): S3ObjectStoreOptions;
  stop(): Promise<void>;
}

export const TEST_BUCKETS = ['den-test', 'den-snapshots'];

export async function startS3Server(): Promise<S3TestServer> {
  const dir = await mkdtemp(join(tmpdir(), 'den-s3rver-'));
  const bin = join(dirname(createRequire(import.meta.url).resolve('s3rver/package.json')), 'bin', 's3rver.js');
  const buckets = TEST_BUCKETS.flatMap((b) => ['--configure-bucket', b]);
  // s3rver encrypts ListObjectsV2 continuation tokens with DES, which OpenSSL 3 offers only in its legacy provider.
  const node = [process.execPath, '--openssl-legacy-provider'];
  const child = spawn(
    node[0]!,
    [...node.slice(1), bin, '-d', dir, '-a', '127.0.0.1', '-p', '0', '--silent', ...buckets],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let port: number;
  try {
    port = await listeningPort(child);
  } catch (err) {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    dir,
    options: (bucket = 'den-test', prefix = '') => ({
      endpoint,
      region: 'us-east-1',
      bucket,
      prefix,
      // s3rver's fixed credentials; it checks the signatures.
      accessKeyId: 'S3RVER',
      secretAccessKey: 'S3RVER',
      forcePathStyle: true,
    }),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** s3rver prints "S3rver listening on 127.0.0.1:<port>" once it accepts connections. */
function listeningPort(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`s3rver did not start within 15 s: ${out}${err}`)), 15_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const m = /listening on [^\s:]+:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      err += chunk.toString();
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`s3rver exited with code ${code}: ${out}${err}`));
    });
  });
}

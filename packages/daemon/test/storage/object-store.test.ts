/**
 * The ObjectStore conformance suite against both adapters: a local directory, and S3 on a real S3-compatible server
 * (s3rver, started on 127.0.0.1 with a free port and stopped after).
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalObjectStore, S3ObjectStore } from '../../src/storage/object-store/index.js';
import { type S3TestServer, startS3Server } from './object-store-s3-server.js';
import { objectStoreSuite } from './object-store-suite.js';

let localDir: string;
objectStoreSuite('local directory', {
  async open() {
    localDir = await mkdtemp(join(tmpdir(), 'den-objects-'));
    return LocalObjectStore.open(localDir);
  },
  partialUploads: () => readdir(join(localDir, 'partial')),
  async teardown() {
    await rm(localDir, { recursive: true, force: true });
  },
});

let server: S3TestServer;
objectStoreSuite('S3 (s3rver)', {
  async open() {
    server = await startS3Server();
    return new S3ObjectStore(server.options());
  },
  async teardown() {
    await server?.stop();
  },
});

let prefixedServer: S3TestServer;
objectStoreSuite('S3 (s3rver) under a key prefix', {
  async open() {
    prefixedServer = await startS3Server();
    return new S3ObjectStore(prefixedServer.options('den-test', 'tenants/one'));
  },
  async teardown() {
    await prefixedServer?.stop();
  },
});

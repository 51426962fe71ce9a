import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resolveConfig } from '../../src/config.js';
import { objectStoreFromEnv, resolveObjectStoreConfig } from '../../src/storage/object-store/index.js';

describe('object store configuration', () => {
  it('defaults to the local store in <home>/objects', () => {
    const cfg = resolveConfig(['--home', '/tmp/den-cfg-test-home'], {});
    assert.deepEqual(cfg.objectStore, { kind: 'local', dir: '/tmp/den-cfg-test-home/objects' });
    assert.deepEqual(resolveConfig(['--home', '/tmp/x'], { DEN_OBJECTS_DIR: '/srv/objects' }).objectStore, {
      kind: 'local',
      dir: '/srv/objects',
    });
  });

  it('selects S3 when DEN_S3_BUCKET is set, with path-style addressing for a custom endpoint', () => {
    const cfg = resolveConfig(['--home', '/tmp/x'], {
      DEN_S3_BUCKET: 'snapshots',
      DEN_S3_ENDPOINT: 'http://127.0.0.1:9000',
      DEN_S3_ACCESS_KEY_ID: 'id',
      DEN_S3_SECRET_ACCESS_KEY: 'secret',
      DEN_S3_PREFIX: 'den/',
    });
    assert.deepEqual(cfg.objectStore, {
      kind: 's3',
      bucket: 'snapshots',
      endpoint: 'http://127.0.0.1:9000',
      region: 'us-east-1',
      prefix: 'den/',
      accessKeyId: 'id',
      secretAccessKey: 'secret',
      forcePathStyle: true,
    });
    const aws = resolveObjectStoreConfig(objectStoreFromEnv({ DEN_S3_BUCKET: 'b', DEN_S3_REGION: 'eu-west-3' }), '/h');
    assert.equal(aws.kind === 's3' && aws.forcePathStyle, false);
    assert.equal(aws.kind === 's3' && aws.region, 'eu-west-3');
  });

  it('refuses settings that cannot work, naming the fix', () => {
    assert.throws(() => resolveObjectStoreConfig({ kind: 's3' }, '/h'), /DEN_S3_BUCKET/);
    assert.throws(() => resolveObjectStoreConfig({ kind: 'ftp' }, '/h'), /"local" or "s3"/);
    assert.throws(
      () => resolveObjectStoreConfig({ kind: 's3', bucket: 'b', endpoint: '127.0.0.1:9000' }, '/h'),
      /must be a URL/,
    );
    assert.throws(
      () => resolveObjectStoreConfig(objectStoreFromEnv({ DEN_S3_BUCKET: 'b', DEN_S3_ACCESS_KEY_ID: 'id' }), '/h'),
      /both DEN_S3_ACCESS_KEY_ID and DEN_S3_SECRET_ACCESS_KEY/,
    );
  });
});

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const PACKAGE_DIR = fileURLToPath(new URL('../../../../', import.meta.url));
const REPO_BIN = join(PACKAGE_DIR, '../../node_modules/.bin');
const GEN_DIR = 'src/e2b/envd/gen';

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) out.push(relative(dir, join(entry.parentPath, entry.name)));
  }
  return out.sort();
}

/**
 * The committed protobuf code is what `npm run generate -w @den/daemon` makes from proto/: regenerated into a temp
 * dir (buf + protoc-gen-es, then `biome check --write` with the repository's settings) and compared file by file.
 */
test('generated envd code matches proto/ (run `npm run generate -w @den/daemon` after editing a .proto)', async () => {
  const out = await mkdtemp(join(tmpdir(), 'den-envd-gen-'));
  try {
    execFileSync(join(REPO_BIN, 'buf'), ['generate', 'proto', '--template', 'proto/buf.gen.yaml', '-o', out], {
      cwd: PACKAGE_DIR,
      stdio: 'pipe',
      // buf finds the protoc-gen-es plugin on PATH, as `npm run` provides it.
      env: { ...process.env, PATH: `${REPO_BIN}:${process.env.PATH ?? ''}` },
    });
    const fresh = join(out, GEN_DIR);
    const committed = join(PACKAGE_DIR, GEN_DIR);
    assert.deepEqual(await files(fresh), await files(committed), 'the same files');
    for (const file of await files(fresh)) {
      // Formatted through stdin under the committed file's path, so biome applies the repository's settings (format and import order).
      const formatted = execFileSync(
        join(REPO_BIN, 'biome'),
        ['check', '--write', `--stdin-file-path=${join(GEN_DIR, file)}`],
        {
          cwd: PACKAGE_DIR,
          input: await readFile(join(fresh, file)),
          stdio: ['pipe', 'pipe', 'pipe'],
        },
      ).toString('utf8');
      assert.equal(formatted, await readFile(join(committed, file), 'utf8'), `${file} was edited by hand`);
    }
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});

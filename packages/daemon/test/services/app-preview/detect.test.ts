/**
 * detectApp over the fixture projects in e2e/fixtures/apps and over in-memory edge cases; the shell step that
 * prepares the writable npm cache and the Vite launcher program are run as real processes.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DenError } from '@den/shared';
import { type AppPlan, detectApp, type ProjectFiles } from '../../../src/services/app-preview/detect.js';
import { npmInstallSteps } from '../../../src/services/app-preview/npm-install.js';
import { pyprojectDependencies, requirementsTxtNames } from '../../../src/services/app-preview/python-plan.js';
import {
  allowedHostEntry,
  lowestVersionInRange,
  viteHonoursAllowedHostsEnv,
  viteScriptArgs,
  viteStartStep,
} from '../../../src/services/app-preview/vite.js';

const FIXTURES = fileURLToPath(new URL('../../../../../../e2e/fixtures/apps/', import.meta.url));
const OPTS = { previewDomain: 'preview.example.test', cacheDir: '/opt/den-cache' };

/** The project directory as the orchestration sees it: top level and one directory down. */
function directoryProject(dir: string): ProjectFiles {
  return {
    async list() {
      const paths: string[] = [];
      for (const entry of await readdir(dir, { withFileTypes: true })) {
        paths.push(entry.name);
        if (entry.isDirectory())
          for (const sub of await readdir(join(dir, entry.name))) paths.push(`${entry.name}/${sub}`);
      }
      return paths;
    },
    async read(path) {
      return readFile(join(dir, path), 'utf8').catch(() => undefined);
    },
  };
}

function memoryProject(files: Record<string, string>): ProjectFiles {
  return {
    list: async () => Object.keys(files),
    read: async (path) => files[path],
  };
}

const detectFixture = (name: string) => detectApp(directoryProject(join(FIXTURES, name)), OPTS);
const detectFiles = (files: Record<string, string>) => detectApp(memoryProject(files), OPTS);
const packageJson = (value: unknown) => JSON.stringify(value);

function assertNpmInstall(plan: AppPlan, command: 'ci' | 'install') {
  assert.equal(plan.install.length, 2);
  assert.deepEqual(plan.install[0]!.argv.slice(0, 2), ['sh', '-c']);
  assert.deepEqual(plan.install[0]!.argv.slice(-2), ['/opt/den-cache/npm', '/tmp/den-npm-cache']);
  assert.deepEqual(plan.install[1]!.argv.slice(0, 5), ['npm', command, '--offline', '--cache', '/tmp/den-npm-cache']);
}

function assertPipInstall(plan: AppPlan, extra: string[]) {
  assert.deepEqual(
    plan.install.map((s) => s.argv),
    [
      ['python3', '-m', 'venv', '.venv'],
      ['.venv/bin/pip', 'install', '--no-index', '--find-links', '/opt/den-cache/pip', ...extra],
    ],
  );
}

async function assertInvalid(promise: Promise<unknown>, message: RegExp) {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof DenError);
    assert.equal(err.code, 'INVALID_ARGUMENT');
    assert.match(err.message, message);
    return true;
  });
}

describe('detectApp on the fixtures', () => {
  it('vite-react: Vite 5 started through its API, allowing the preview domain', async () => {
    const plan = await detectFixture('vite-react');
    assert.equal(plan.kind, 'vite');
    assert.equal(plan.port, 5173);
    assertNpmInstall(plan, 'ci');
    assert.deepEqual(plan.start.argv.slice(0, 3), ['node', '--input-type=module', '-e']);
    assert.match(plan.start.argv[3]!, /"host":"0.0.0.0","port":5173,"strictPort":true/);
    assert.deepEqual(plan.start.env, { __VITE_ADDITIONAL_SERVER_ALLOWED_HOSTS: '.preview.example.test' });
  });

  for (const [name, port, argv] of [
    ['express', 3000, ['npm', 'start']],
    ['fastify', 3000, ['npm', 'start']],
    ['koa', 3000, ['node', 'app.js']],
  ] as const) {
    it(`${name}: npm ci from the cache, then ${argv.join(' ')} on PORT=${port}`, async () => {
      const plan = await detectFixture(name);
      assert.equal(plan.kind, 'node');
      assert.equal(plan.port, port);
      assertNpmInstall(plan, 'ci');
      assert.deepEqual(plan.start.argv, argv);
      assert.equal(plan.start.env.PORT, String(port));
      assert.equal(plan.start.env.HOST, '0.0.0.0');
    });
  }

  it('npm-start: no dependencies, so no install; the port the server falls back to', async () => {
    const plan = await detectFixture('npm-start');
    assert.equal(plan.kind, 'node');
    assert.deepEqual(plan.install, []);
    assert.deepEqual(plan.start.argv, ['npm', 'start']);
    assert.equal(plan.port, 4000);
  });

  it('flask: a venv from the wheelhouse, flask run on 5000', async () => {
    const plan = await detectFixture('flask');
    assert.equal(plan.kind, 'flask');
    assert.equal(plan.port, 5000);
    assertPipInstall(plan, ['-r', 'requirements.txt']);
    assert.deepEqual(plan.start.argv, ['.venv/bin/flask', 'run', '--host', '0.0.0.0', '--port', '5000']);
    assert.equal(plan.start.env.FLASK_APP, 'app:app');
  });

  it('fastapi: uvicorn main:app on 8000', async () => {
    const plan = await detectFixture('fastapi');
    assert.equal(plan.kind, 'fastapi');
    assert.equal(plan.port, 8000);
    assertPipInstall(plan, ['-r', 'requirements.txt']);
    assert.deepEqual(plan.start.argv, ['.venv/bin/uvicorn', 'main:app', '--host', '0.0.0.0', '--port', '8000']);
  });

  it('python-plain: python3 app.py with PORT, nothing to install', async () => {
    const plan = await detectFixture('python-plain');
    assert.equal(plan.kind, 'python');
    assert.deepEqual(plan.install, []);
    assert.deepEqual(plan.start.argv, ['python3', 'app.py']);
    assert.equal(plan.start.env.PORT, '8000');
  });
});

describe('detectApp: Node edge cases', () => {
  it('runs the vite CLI with the env var when the lockfile pins Vite >= 6.1, keeping the dev script flags', async () => {
    const plan = await detectFiles({
      'package.json': packageJson({
        scripts: { dev: 'vite --port 3001 --mode staging' },
        devDependencies: { vite: '^6' },
      }),
      'package-lock.json': packageJson({ packages: { 'node_modules/vite': { version: '6.3.5' } } }),
    });
    assert.equal(plan.port, 3001);
    assert.deepEqual(plan.start.argv, [
      'node_modules/.bin/vite',
      '--mode',
      'staging',
      '--host',
      '0.0.0.0',
      '--port',
      '3001',
      '--strictPort',
    ]);
    assert.equal(plan.start.env.__VITE_ADDITIONAL_SERVER_ALLOWED_HOSTS, '.preview.example.test');
  });

  it('without a lockfile: npm install, the version taken from the range, the port from vite.config', async () => {
    const plan = await detectFiles({
      'package.json': packageJson({ scripts: { dev: 'vite' }, devDependencies: { vite: '^6.2.0' } }),
      'vite.config.ts': 'export default { server: { open: true, port: 4173 } }',
    });
    assertNpmInstall(plan, 'install');
    assert.equal(plan.port, 4173);
    assert.equal(plan.start.argv[0], 'node_modules/.bin/vite');
  });

  it('a server that only builds its client with Vite is a Node app', async () => {
    const plan = await detectFiles({
      'package.json': packageJson({
        scripts: { start: 'node server.js', build: 'vite build' },
        dependencies: { express: '^4' },
        devDependencies: { vite: '^5' },
      }),
      'server.js': 'app.listen(process.env.PORT ?? 8080)',
    });
    assert.equal(plan.kind, 'node');
    assert.equal(plan.port, 8080);
  });

  it('reads the port from the start script, then .env, then the entry file', async () => {
    const withScript = await detectFiles({
      'package.json': packageJson({ scripts: { start: 'PORT=4500 node index.js' } }),
      '.env': 'PORT=9999',
    });
    assert.equal(withScript.port, 4500);
    const withDotenv = await detectFiles({
      'package.json': packageJson({ main: 'src/app.js' }),
      'src/app.js': 'server.listen(7000)',
      '.env': 'PORT=9999',
    });
    assert.equal(withDotenv.port, 9999);
    const withSource = await detectFiles({
      'package.json': packageJson({ main: './src/app.js' }),
      'src/app.js': 'server.listen(7000)',
    });
    assert.deepEqual(withSource.start.argv, ['node', 'src/app.js']);
    assert.equal(withSource.port, 7000);
  });

  it('falls back to npm run dev when there is no start script', async () => {
    const plan = await detectFiles({ 'package.json': packageJson({ scripts: { dev: 'nodemon index.js' } }) });
    assert.deepEqual(plan.start.argv, ['npm', 'run', 'dev']);
    assert.equal(plan.port, 3000);
  });

  it('rejects a package.json den cannot start, naming the fix', async () => {
    await assertInvalid(detectFiles({ 'package.json': packageJson({ name: 'lib' }) }), /add a "start" script/);
    await assertInvalid(detectFiles({ 'package.json': '{ nope' }), /package.json is not valid JSON/);
  });

  it('plans a Python app that carries a package.json for front-end tooling only', async () => {
    const plan = await detectFiles({
      'package.json': packageJson({ devDependencies: { tailwindcss: '^3' } }),
      'requirements.txt': 'flask==2.2.2\n',
      'app.py': 'from flask import Flask\napp = Flask(__name__)\n',
    });
    assert.equal(plan.kind, 'flask');
  });
});

describe('detectApp: Python edge cases', () => {
  it("FastAPI's app/main.py layout, adding uvicorn when requirements.txt lacks it", async () => {
    const plan = await detectFiles({
      'requirements.txt': '# api\nfastapi>=0.90  # web\n-r extra.txt\n',
      'app/__init__.py': '',
      'app/main.py': 'import fastapi\napi: fastapi.FastAPI = fastapi.FastAPI()\n',
      'tests/test_main.py': 'app = FastAPI()',
    });
    assert.equal(plan.kind, 'fastapi');
    assertPipInstall(plan, ['-r', 'requirements.txt', 'uvicorn']);
    assert.deepEqual(plan.start.argv.slice(0, 2), ['.venv/bin/uvicorn', 'app.main:api']);
  });

  it('the port a uvicorn.run or app.run call names', async () => {
    const plan = await detectFiles({
      'main.py': 'from fastapi import FastAPI\napp = FastAPI()\nuvicorn.run(app, host="0.0.0.0", port=8001)\n',
    });
    assert.equal(plan.port, 8001);
    assertPipInstall(plan, ['fastapi', 'uvicorn']);
  });

  it('pyproject.toml dependencies when there is no requirements.txt; a Flask app factory', async () => {
    const plan = await detectFiles({
      'pyproject.toml':
        '[project]\nname = "x"\ndependencies = [\n  "flask>=2",\n  "uvicorn[standard]",\n]\n[tool.x]\ny = 1\n',
      'server.py': 'from flask import Flask\n\ndef create_app():\n    return Flask(__name__)\n',
    });
    assert.equal(plan.kind, 'flask');
    assert.equal(plan.start.env.FLASK_APP, 'server');
    assertPipInstall(plan, ['flask>=2', 'uvicorn[standard]']);
  });

  it('a plain script with a hard-coded port, in a venv when it has requirements', async () => {
    const plan = await detectFiles({
      'requirements.txt': 'requests\n',
      'serve.py': 'if __name__ == "__main__":\n    HTTPServer(("", 8080), H).serve_forever()\n',
    });
    assert.equal(plan.kind, 'python');
    assert.equal(plan.port, 8080);
    assert.deepEqual(plan.start.argv, ['.venv/bin/python', 'serve.py']);
  });

  it('rejects projects den does not recognise, saying what it looks for', async () => {
    await assertInvalid(detectFiles({ 'README.md': '# hi' }), /package\.json.*main\.py/);
    await assertInvalid(detectFiles({ 'requirements.txt': 'fastapi\n', 'lib/util.py': '' }), /app = FastAPI\(\)/);
    await assertInvalid(detectFiles({ 'tool.py': 'def f(): pass\n' }), /add a main\.py or app\.py/);
  });

  it('parses requirement names and pyproject dependency strings', () => {
    assert.deepEqual(requirementsTxtNames('Flask_Login>=1\n\n--index-url x\nuvicorn[standard]; python_version>"3"\n'), [
      'flask-login',
      'uvicorn',
    ]);
    assert.deepEqual(pyprojectDependencies('[project]\ndependencies = [\'a[x]>=1\', "b"]\n'), ['a[x]>=1', 'b']);
    assert.deepEqual(pyprojectDependencies('[tool.poetry.dependencies]\npython = "^3.11"\n'), []);
  });
});

describe('vite helpers', () => {
  it('knows which Vite versions read __VITE_ADDITIONAL_SERVER_ALLOWED_HOSTS', () => {
    for (const v of ['6.1.0', '6.4.1', '7.0.0', '8.3.8']) assert.equal(viteHonoursAllowedHostsEnv(v), true, v);
    for (const v of ['5.4.21', '6.0.15', '4.5.6', undefined, 'latest'])
      assert.equal(viteHonoursAllowedHostsEnv(v), false);
    assert.equal(lowestVersionInRange('^6.1.0'), '6.1.0');
    assert.equal(lowestVersionInRange('>=5 <7'), undefined);
    assert.equal(allowedHostEntry('.preview.example.test'), '.preview.example.test');
    assert.equal(allowedHostEntry(''), '');
  });

  it('keeps a dev script’s own flags and drops the ones den sets', () => {
    assert.deepEqual(viteScriptArgs('vite --host --port 80 --open --strictPort -m dev'), ['-m', 'dev']);
    assert.deepEqual(viteScriptArgs('vite dev --host=0.0.0.0'), ['dev']);
    assert.equal(viteScriptArgs('vite build && vite preview'), undefined);
    assert.equal(viteScriptArgs('next dev'), undefined);
  });
});

describe('real processes', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'den-app-preview-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('the npm cache step copies the index and links the read-only content store', async () => {
    const shared = join(dir, 'shared/npm');
    const own = join(dir, 'own');
    await mkdir(join(shared, '_cacache/index-v5/ab'), { recursive: true });
    await mkdir(join(shared, '_cacache/content-v2/sha512'), { recursive: true });
    await writeFile(join(shared, '_cacache/index-v5/ab/cd'), 'entry');
    const [prepare] = npmInstallSteps({ cacheDir: join(dir, 'shared'), hasLockfile: true });
    const argv = [...prepare!.argv.slice(0, -1), own];
    for (let run = 0; run < 2; run++) {
      const result = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
      assert.equal(result.status, 0, result.stderr);
    }
    assert.equal(await readFile(join(own, '_cacache/index-v5/ab/cd'), 'utf8'), 'entry');
    assert.equal(await readlink(join(own, '_cacache/content-v2')), join(shared, '_cacache/content-v2'));
    assert.ok((await lstat(join(own, '_cacache/tmp'))).isDirectory());

    const emptyArgv = [...prepare!.argv.slice(0, -2), join(dir, 'missing'), own];
    const empty = spawnSync(emptyArgv[0]!, emptyArgv.slice(1), { encoding: 'utf8' });
    assert.notEqual(empty.status, 0);
    assert.match(empty.stderr, /scripts\/package-cache\.sh/);
  });

  it('the Vite launcher adds the preview domain to allowedHosts and listens on 0.0.0.0', async () => {
    // A stand-in `vite` package: createServer runs the inline plugins' config hooks over a project config, the
    // way Vite's resolveConfig does, and prints what the server would use.
    const project = join(dir, 'vite-project');
    await mkdir(join(project, 'node_modules/vite'), { recursive: true });
    await writeFile(
      join(project, 'node_modules/vite/package.json'),
      packageJson({ name: 'vite', type: 'module', main: 'index.js' }),
    );
    await writeFile(
      join(project, 'node_modules/vite/index.js'),
      `export async function createServer(inline) {
         const config = { server: { allowedHosts: ['.mine.test'], ...inline.server }, mode: inline.mode };
         for (const plugin of inline.plugins) plugin.config?.(config);
         return { listen: async () => console.log(JSON.stringify(config)), printUrls() {} };
       }`,
    );
    const step = viteStartStep({
      port: 5174,
      previewDomain: 'preview.example.test',
      version: '5.4.21',
      devScript: 'vite -m qa',
    });
    const result = spawnSync(step.argv[0]!, step.argv.slice(1), {
      cwd: project,
      env: { ...process.env, ...step.env },
      encoding: 'utf8',
    });
    assert.equal(result.status, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout), {
      server: { allowedHosts: ['.mine.test', '.preview.example.test'], host: '0.0.0.0', port: 5174, strictPort: true },
      mode: 'qa',
    });
  });
});

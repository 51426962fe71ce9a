/** Plans for Python projects: FastAPI (served by uvicorn), Flask (its dev server), or a plain script. */
import { DenError } from '@den/shared';
import { portFromPythonSource } from './port-hints.js';
import type { AppPlan, DetectOptions, ProjectFiles, Step } from './types.js';

export const FASTAPI_DEFAULT_PORT = 8000;
export const FLASK_DEFAULT_PORT = 5000;
export const PYTHON_DEFAULT_PORT = 8000;
/** Preferred entry files, in order; `app/main.py` is FastAPI's documented "bigger application" layout. */
export const PYTHON_ENTRY_CANDIDATES = [
  'main.py',
  'app.py',
  'server.py',
  'api.py',
  'asgi.py',
  'wsgi.py',
  'run.py',
  'app/main.py',
  'src/main.py',
  'app/__init__.py',
];
/** Directories that hold environments or tests, never the app. */
const IGNORED_DIRS = new Set(['.venv', 'venv', 'env', 'node_modules', 'tests', 'test', '__pycache__', '.git']);
/** Bound on the files read while looking for the app object. */
const MAX_SOURCES_READ = 40;

const FASTAPI_APP_RE = /^(\w+)\s*(?::\s*[\w.]+\s*)?=\s*(?:fastapi\.)?FastAPI\s*\(/m;
const FLASK_APP_RE = /^(\w+)\s*(?::\s*[\w.]+\s*)?=\s*(?:flask\.)?Flask\s*\(/m;
const FLASK_FACTORY_RE = /^def\s+(?:create_app|make_app)\s*\(/m;
const FLASK_IMPORT_RE = /^\s*(?:from\s+flask\s+import|import\s+flask)\b/m;

/** PEP 503 normalised distribution name of a requirement line (`Flask_Login>=1` -> `flask-login`). */
export function requirementName(line: string): string | undefined {
  const match = /^\s*([A-Za-z0-9][A-Za-z0-9._-]*)/.exec(line.replace(/#.*/, ''));
  return match?.[1]?.toLowerCase().replace(/[-_.]+/g, '-');
}

/** The requirement specifiers of requirements.txt, without comments, options (-r, -e, --index-url) or blanks. */
export function requirementsTxtNames(text: string): string[] {
  return text
    .split('\n')
    .filter((line) => !/^\s*-/.test(line))
    .map(requirementName)
    .filter((name): name is string => name !== undefined);
}

/** The strings of `[project] dependencies = [...]` in a pyproject.toml (PEP 621); poetry's table is not read. */
export function pyprojectDependencies(text: string): string[] {
  const project = /^\[project\]\s*$([\s\S]*?)(?=^\[|(?![\s\S]))/m.exec(text)?.[1] ?? '';
  const start = /^dependencies\s*=\s*\[/m.exec(project);
  if (!start) return [];
  const deps: string[] = [];
  let quote: string | undefined;
  let current = '';
  for (const ch of project.slice(start.index + start[0].length)) {
    if (quote) {
      if (ch === quote) {
        deps.push(current);
        quote = undefined;
        current = '';
      } else current += ch;
    } else if (ch === '"' || ch === "'") quote = ch;
    else if (ch === ']') break;
  }
  return deps.filter((dep) => dep.trim());
}

function moduleName(path: string): string {
  return path
    .replace(/\.py$/, '')
    .replace(/\/__init__$/, '')
    .split('/')
    .join('.');
}

function pythonSources(files: string[]): string[] {
  const candidates = PYTHON_ENTRY_CANDIDATES.filter((path) => files.includes(path));
  const usable = files.filter((path) => {
    const parts = path.split('/');
    return path.endsWith('.py') && parts.length <= 2 && !parts.slice(0, -1).some((dir) => IGNORED_DIRS.has(dir));
  });
  const topLevel = usable.filter((path) => !path.includes('/')).sort();
  const nested = usable.filter((path) => path.includes('/')).sort();
  return [...new Set([...candidates, ...topLevel, ...nested])];
}

type PythonApp =
  | { kind: 'fastapi'; module: string; variable: string; source: string }
  | { kind: 'flask'; module: string; variable: string | undefined; source: string }
  | { kind: 'python'; path: string; source: string };

async function findApp(project: ProjectFiles, files: string[]): Promise<PythonApp | undefined> {
  const sources = pythonSources(files);
  let plain: PythonApp | undefined;
  for (const path of sources.slice(0, MAX_SOURCES_READ)) {
    const source = await project.read(path);
    if (source === undefined) continue;
    const fastapi = FASTAPI_APP_RE.exec(source);
    if (fastapi) return { kind: 'fastapi', module: moduleName(path), variable: fastapi[1]!, source };
    const flask = FLASK_APP_RE.exec(source);
    if (flask || (FLASK_IMPORT_RE.test(source) && FLASK_FACTORY_RE.test(source))) {
      return { kind: 'flask', module: moduleName(path), variable: flask?.[1], source };
    }
    // A plain script is a top-level file den would run with `python3 <file>`.
    if (!plain && !path.includes('/') && (PYTHON_ENTRY_CANDIDATES.includes(path) || /__main__/.test(source))) {
      plain = { kind: 'python', path, source };
    }
  }
  return plain;
}

function pipInstallSteps(cacheDir: string, requirementsFile: boolean, packages: string[]): Step[] {
  const env = { PIP_DISABLE_PIP_VERSION_CHECK: '1', PIP_NO_INPUT: '1' };
  return [
    { argv: ['python3', '-m', 'venv', '.venv'], env: {} },
    {
      argv: [
        '.venv/bin/pip',
        'install',
        '--no-index',
        '--find-links',
        `${cacheDir}/pip`,
        ...(requirementsFile ? ['-r', 'requirements.txt'] : []),
        ...packages,
      ],
      env,
    },
  ];
}

/** True when the project looks like Python at all (used to pick an error message). */
export function looksLikePython(files: string[]): boolean {
  return files.some((path) => path === 'requirements.txt' || path === 'pyproject.toml' || path.endsWith('.py'));
}

export async function planPythonApp(project: ProjectFiles, files: string[], opts: DetectOptions): Promise<AppPlan> {
  const requirementsText = files.includes('requirements.txt') ? await project.read('requirements.txt') : undefined;
  const pyprojectText = files.includes('pyproject.toml') ? await project.read('pyproject.toml') : undefined;
  // requirements.txt wins over pyproject.toml: when both exist it is usually the pinned, complete list.
  const extraRequirements = requirementsText === undefined && pyprojectText ? pyprojectDependencies(pyprojectText) : [];
  const declared = new Set([
    ...(requirementsText ? requirementsTxtNames(requirementsText) : []),
    ...extraRequirements.map(requirementName).filter((name): name is string => name !== undefined),
  ]);

  const app = await findApp(project, files);
  if (!app) {
    const framework = declared.has('fastapi')
      ? 'an `app = FastAPI()`'
      : declared.has('flask')
        ? 'an `app = Flask(__name__)`'
        : undefined;
    throw new DenError(
      'INVALID_ARGUMENT',
      framework
        ? `den found no Python file with ${framework} at the project's top level or one directory down; ` +
            `put it in main.py or app.py`
        : `den cannot tell which Python file to run: add a main.py or app.py at the project's top level ` +
            `(looked for ${PYTHON_ENTRY_CANDIDATES.join(', ')} and files with \`if __name__ == "__main__"\`)`,
    );
  }

  const frameworkPackages =
    app.kind === 'fastapi' ? ['fastapi', 'uvicorn'] : app.kind === 'flask' ? ['flask'] : ([] as string[]);
  const missing = frameworkPackages.filter((name) => !declared.has(name));
  const needsVenv = declared.size > 0 || missing.length > 0;
  const install = needsVenv
    ? pipInstallSteps(opts.cacheDir, requirementsText !== undefined, [...extraRequirements, ...missing])
    : [];
  const env = { PYTHONUNBUFFERED: '1' };

  switch (app.kind) {
    case 'fastapi': {
      const port = portFromPythonSource(app.source) ?? FASTAPI_DEFAULT_PORT;
      const target = `${app.module}:${app.variable}`;
      return {
        kind: 'fastapi',
        install,
        start: { argv: ['.venv/bin/uvicorn', target, '--host', '0.0.0.0', '--port', String(port)], env },
        port,
      };
    }
    case 'flask': {
      const port = portFromPythonSource(app.source) ?? FLASK_DEFAULT_PORT;
      // FLASK_APP rather than --app: every Flask version reads it (--app exists since 2.2).
      const flaskApp = app.variable ? `${app.module}:${app.variable}` : app.module;
      return {
        kind: 'flask',
        install,
        start: {
          argv: ['.venv/bin/flask', 'run', '--host', '0.0.0.0', '--port', String(port)],
          env: { ...env, FLASK_APP: flaskApp },
        },
        port,
      };
    }
    case 'python': {
      const port = portFromPythonSource(app.source) ?? PYTHON_DEFAULT_PORT;
      return {
        kind: 'python',
        install,
        start: {
          argv: [needsVenv ? '.venv/bin/python' : 'python3', app.path],
          env: { ...env, PORT: String(port), HOST: '0.0.0.0' },
        },
        port,
      };
    }
  }
}

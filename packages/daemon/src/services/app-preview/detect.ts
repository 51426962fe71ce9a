/**
 * Detects how to run a project as a live preview: which runtime, how to install its packages from den's shared
 * offline cache, and how to start its dev server on 0.0.0.0 at a known port. Pure: it only reads the project.
 */
import { DenError } from '@den/shared';
import { planNodeApp } from './node-plan.js';
import { looksLikePython, planPythonApp } from './python-plan.js';
import type { AppPlan, DetectOptions, ProjectFiles } from './types.js';

export type { AppKind, AppPlan, DetectOptions, ProjectFiles, Step } from './types.js';

const WHAT_DEN_LOOKS_FOR =
  'den runs a package.json project (Vite, or Node with a "start"/"dev" script or a server.js/index.js/app.js) ' +
  'or a Python project (FastAPI or Flask app, or a main.py/app.py/server.py script, with its requirements.txt)';

/**
 * @example
 * const plan = await detectApp(files, { previewDomain: 'preview.example.com', cacheDir: '/opt/den-cache' });
 * for (const step of plan.install) await run(step.argv, step.env);
 * start(plan.start.argv, plan.start.env); await waitForPort(plan.port);
 */
export async function detectApp(project: ProjectFiles, opts: DetectOptions): Promise<AppPlan> {
  const files = (await project.list()).map((path) => path.replace(/^\.\//, ''));
  const fileSet = new Set(files);
  const packageJson = fileSet.has('package.json') ? await project.read('package.json') : undefined;
  const python = looksLikePython(files);

  if (packageJson !== undefined) {
    try {
      return await planNodeApp(project, fileSet, packageJson, opts);
    } catch (err) {
      // A Python app may carry a package.json for front-end tooling only; it is then planned as Python.
      if (!(python && err instanceof DenError && err.code === 'INVALID_ARGUMENT')) throw err;
    }
  }
  if (python) return planPythonApp(project, files, opts);
  throw new DenError(
    'INVALID_ARGUMENT',
    `den cannot tell how to run this project: ${WHAT_DEN_LOOKS_FOR}; none was found at its top level`,
  );
}

import { RunscRuntime } from '../../src/runtime/runsc.js';
import { runtimeSuite } from './conformance.js';

await runtimeSuite('runsc', (paths) => new RunscRuntime({ root: paths.runtimeRoot('runsc') }));

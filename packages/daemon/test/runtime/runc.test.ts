import { RuncRuntime } from '../../src/runtime/runc.js';
import { runtimeSuite } from './conformance.js';

await runtimeSuite('runc', (paths) => new RuncRuntime({ root: paths.runtimeRoot('runc') }));

export * from './harness.js';
export * from './leaks.js';

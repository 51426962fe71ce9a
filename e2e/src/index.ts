export * from './harness.js';
export * from './http.js';
export * from './leaks.js';

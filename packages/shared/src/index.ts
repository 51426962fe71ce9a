export * from './api.js';
export * from './errors.js';
export * from './frames.js';
export * from './ids.js';
export * from './process.js';
export * from './sandbox-path.js';
export * from './version.js';

/** @den/cli: the `den` command. `bin/den` runs main.js (bundled into dist/den.bundle.mjs by `npm run build`); these exports serve tests and embedding. */
export { defaultHandlers, type RunCliOptions, runCli, usageMessage } from './cli.js';
export { type CliConfig, DEFAULT_HOME, DEFAULT_LISTEN, parseListen, resolveCliConfig, urlForListen } from './config.js';
export { baseName, type CpLocation, type CpPlan, joinPath, parseCpArgs, parseCpLocation } from './cp-path.js';
export { CliError, describeError, EXIT_FAILURE, EXIT_TIMEOUT, EXIT_USAGE, exitCodeFor, UsageError } from './errors.js';
export * from './program.js';

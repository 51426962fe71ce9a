/**
 * @den/sdk: the TypeScript client for den's native API.
 *
 * @example
 * ```ts
 * import { Sandbox } from '@den/sdk';
 *
 * const sbx = await Sandbox.create();
 * const result = await sbx.commands.run('echo hello');
 * console.log(result.stdout); // 'hello\n'
 * await sbx.kill();
 * ```
 */
export type {
  ApiKey,
  AppInfo,
  AppStartRequest,
  CreatedApiKey,
  ErrorBody,
  ExecRequest,
  ExitInfo,
  FileEntry,
  FileType,
  Image,
  ListeningPort,
  NetworkPolicyName,
  NetworkSettings,
  OnTimeoutAction,
  ProcessInfo,
  ProcessSpec,
  PtySize,
  RuntimeName,
  SandboxState,
  Status,
} from '@den/shared';
export { App, type DeployOptions } from './app.js';
export { DenClient } from './client.js';
export { type BackgroundRunOptions, CommandHandle, Commands, type RunOptions, toArgv } from './commands.js';
export {
  type ConnectionOptions,
  DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_URL,
  type RequestOptions,
  type ResolvedConfig,
  resolveConfig,
} from './config.js';
export * from './errors.js';
export { type FileOptions, Files, type ReadFormat, type ReadFormats, type WriteData } from './files.js';
export { Ports, PortWaitTimeoutError, type WaitForPortOptions } from './ports.js';
export type { CommandResult, OutputOptions } from './process-stream.js';
export { DEFAULT_PTY_COMMAND, DEFAULT_TERM, Pty, type PtyCreateOptions, PtyHandle } from './pty.js';
export {
  Sandbox,
  type SandboxCreateOptions,
  type SandboxInfo,
  type SandboxListOptions,
  type SnapshotInfo,
} from './sandbox.js';

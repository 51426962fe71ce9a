import { DenError, type ErrorCode, ErrorCodes } from '@den/shared';

export { DenError, type ErrorCode, ErrorCodes };

type Details = Record<string, unknown> | undefined;

/*
 * One class per error code callers commonly catch. Each narrows `code`, so after `instanceof` the compiler knows
 * it. They all extend DenError, so `err instanceof DenError` and `err.code` keep working for every code.
 */

/** A request field is missing, malformed or out of range; the message names the field and the fix. */
export class InvalidArgumentError extends DenError {
  declare readonly code: 'INVALID_ARGUMENT';
  constructor(message: string, details?: Details, requestId?: string) {
    super('INVALID_ARGUMENT', message, details, requestId);
    this.name = 'InvalidArgumentError';
  }
}

/** The request carries no API key or an unknown one. */
export class UnauthorizedError extends DenError {
  declare readonly code: 'UNAUTHORIZED';
  constructor(message: string, details?: Details, requestId?: string) {
    super('UNAUTHORIZED', message, details, requestId);
    this.name = 'UnauthorizedError';
  }
}

/**
 * No sandbox with that id or name.
 *
 * @example
 * ```ts
 * try {
 *   await Sandbox.connect('dev');
 * } catch (err) {
 *   if (err instanceof SandboxNotFoundError) console.log('no sandbox named dev yet');
 *   else throw err;
 * }
 * ```
 */
export class SandboxNotFoundError extends DenError {
  declare readonly code: 'SANDBOX_NOT_FOUND';
  constructor(message: string, details?: Details, requestId?: string) {
    super('SANDBOX_NOT_FOUND', message, details, requestId);
    this.name = 'SandboxNotFoundError';
  }
}

/** No image with that name. */
export class ImageNotFoundError extends DenError {
  declare readonly code: 'IMAGE_NOT_FOUND';
  constructor(message: string, details?: Details, requestId?: string) {
    super('IMAGE_NOT_FOUND', message, details, requestId);
    this.name = 'ImageNotFoundError';
  }
}

/** The runtime is unknown or not installed on the daemon's machine. */
export class RuntimeUnavailableError extends DenError {
  declare readonly code: 'RUNTIME_UNAVAILABLE';
  constructor(message: string, details?: Details, requestId?: string) {
    super('RUNTIME_UNAVAILABLE', message, details, requestId);
    this.name = 'RuntimeUnavailableError';
  }
}

/** Another sandbox already has that name. */
export class NameTakenError extends DenError {
  declare readonly code: 'NAME_TAKEN';
  constructor(message: string, details?: Details, requestId?: string) {
    super('NAME_TAKEN', message, details, requestId);
    this.name = 'NameTakenError';
  }
}

/** The operation needs a running sandbox. */
export class SandboxNotRunningError extends DenError {
  declare readonly code: 'SANDBOX_NOT_RUNNING';
  constructor(message: string, details?: Details, requestId?: string) {
    super('SANDBOX_NOT_RUNNING', message, details, requestId);
    this.name = 'SandboxNotRunningError';
  }
}

/** Another lifecycle operation on the sandbox is in progress. */
export class SandboxBusyError extends DenError {
  declare readonly code: 'SANDBOX_BUSY';
  constructor(message: string, details?: Details, requestId?: string) {
    super('SANDBOX_BUSY', message, details, requestId);
    this.name = 'SandboxBusyError';
  }
}

/** No process with that pid is known to the sandbox's agent. */
export class ProcessNotFoundError extends DenError {
  declare readonly code: 'PROCESS_NOT_FOUND';
  constructor(message: string, details?: Details, requestId?: string) {
    super('PROCESS_NOT_FOUND', message, details, requestId);
    this.name = 'ProcessNotFoundError';
  }
}

/** The command to run does not exist in the sandbox or is not executable. */
export class ExecutableNotFoundError extends DenError {
  declare readonly code: 'EXECUTABLE_NOT_FOUND';
  constructor(message: string, details?: Details, requestId?: string) {
    super('EXECUTABLE_NOT_FOUND', message, details, requestId);
    this.name = 'ExecutableNotFoundError';
  }
}

/** No file or directory at that path in the sandbox. */
export class FileNotFoundError extends DenError {
  declare readonly code: 'FILE_NOT_FOUND';
  constructor(message: string, details?: Details, requestId?: string) {
    super('FILE_NOT_FOUND', message, details, requestId);
    this.name = 'FileNotFoundError';
  }
}

/** A file already exists at that path. */
export class FileExistsError extends DenError {
  declare readonly code: 'FILE_EXISTS';
  constructor(message: string, details?: Details, requestId?: string) {
    super('FILE_EXISTS', message, details, requestId);
    this.name = 'FileExistsError';
  }
}

/** A directory was expected at that path. */
export class NotADirectoryError extends DenError {
  declare readonly code: 'NOT_A_DIRECTORY';
  constructor(message: string, details?: Details, requestId?: string) {
    super('NOT_A_DIRECTORY', message, details, requestId);
    this.name = 'NotADirectoryError';
  }
}

/** A file was expected but the path is a directory. */
export class IsADirectoryError extends DenError {
  declare readonly code: 'IS_A_DIRECTORY';
  constructor(message: string, details?: Details, requestId?: string) {
    super('IS_A_DIRECTORY', message, details, requestId);
    this.name = 'IsADirectoryError';
  }
}

/** The sandbox user may not access that path. */
export class PermissionDeniedError extends DenError {
  declare readonly code: 'PERMISSION_DENIED';
  constructor(message: string, details?: Details, requestId?: string) {
    super('PERMISSION_DENIED', message, details, requestId);
    this.name = 'PermissionDeniedError';
  }
}

/** The sandbox reached its process or memory limit (e.g. a fork bomb); end processes or raise the limits. */
export class ResourceExhaustedError extends DenError {
  declare readonly code: 'RESOURCE_EXHAUSTED';
  constructor(message: string, details?: Details, requestId?: string) {
    super('RESOURCE_EXHAUSTED', message, details, requestId);
    this.name = 'ResourceExhaustedError';
  }
}

/** The sandbox's disk limit is reached. */
export class DiskFullError extends DenError {
  declare readonly code: 'DISK_FULL';
  constructor(message: string, details?: Details, requestId?: string) {
    super('DISK_FULL', message, details, requestId);
    this.name = 'DiskFullError';
  }
}

/** The sandbox's agent does not answer (the sandbox may be starting, stopping or broken). */
export class AgentUnavailableError extends DenError {
  declare readonly code: 'AGENT_UNAVAILABLE';
  constructor(message: string, details?: Details, requestId?: string) {
    super('AGENT_UNAVAILABLE', message, details, requestId);
    this.name = 'AgentUnavailableError';
  }
}

/** The OCI runtime (runsc or runc) failed; the message carries its error. */
export class RuntimeFailedError extends DenError {
  declare readonly code: 'RUNTIME_FAILED';
  constructor(message: string, details?: Details, requestId?: string) {
    super('RUNTIME_FAILED', message, details, requestId);
    this.name = 'RuntimeFailedError';
  }
}

/** No live preview app was started in that sandbox (`sbx.app.start` first). */
export class AppNotFoundError extends DenError {
  declare readonly code: 'APP_NOT_FOUND';
  constructor(message: string, details?: Details, requestId?: string) {
    super('APP_NOT_FOUND', message, details, requestId);
    this.name = 'AppNotFoundError';
  }
}

/** The live preview app could not be installed or started; the message ends with the app's log. */
export class AppFailedError extends DenError {
  declare readonly code: 'APP_FAILED';
  constructor(message: string, details?: Details, requestId?: string) {
    super('APP_FAILED', message, details, requestId);
    this.name = 'AppFailedError';
  }
}

/** No API key with that name (`den key ls` lists them). */
export class ApiKeyNotFoundError extends DenError {
  declare readonly code: 'API_KEY_NOT_FOUND';
  constructor(message: string, details?: Details, requestId?: string) {
    super('API_KEY_NOT_FOUND', message, details, requestId);
    this.name = 'ApiKeyNotFoundError';
  }
}

/** An API key with that name already exists; choose another name or remove the old key. */
export class ApiKeyExistsError extends DenError {
  declare readonly code: 'API_KEY_EXISTS';
  constructor(message: string, details?: Details, requestId?: string) {
    super('API_KEY_EXISTS', message, details, requestId);
    this.name = 'ApiKeyExistsError';
  }
}

/** No object with that key in the daemon's object store (a snapshot part that was deleted or never written). */
export class ObjectNotFoundError extends DenError {
  declare readonly code: 'OBJECT_NOT_FOUND';
  constructor(message: string, details?: Details, requestId?: string) {
    super('OBJECT_NOT_FOUND', message, details, requestId);
    this.name = 'ObjectNotFoundError';
  }
}

/** A stored snapshot does not match its manifest (checksum or size); nothing was restored. */
export class SnapshotCorruptError extends DenError {
  declare readonly code: 'SNAPSHOT_CORRUPT';
  constructor(message: string, details?: Details, requestId?: string) {
    super('SNAPSHOT_CORRUPT', message, details, requestId);
    this.name = 'SnapshotCorruptError';
  }
}

/** No snapshot with that id or name in the daemon's object store. */
export class SnapshotNotFoundError extends DenError {
  declare readonly code: 'SNAPSHOT_NOT_FOUND';
  constructor(message: string, details?: Details, requestId?: string) {
    super('SNAPSHOT_NOT_FOUND', message, details, requestId);
    this.name = 'SnapshotNotFoundError';
  }
}

/** An image with that name already exists. */
export class ImageExistsError extends DenError {
  declare readonly code: 'IMAGE_EXISTS';
  constructor(message: string, details?: Details, requestId?: string) {
    super('IMAGE_EXISTS', message, details, requestId);
    this.name = 'ImageExistsError';
  }
}

/** Constructor shape shared by the code-specific classes above. */
export type DenErrorSubclass = new (message: string, details?: Details, requestId?: string) => DenError;

/**
 * The class the SDK builds for each code. `Record<ErrorCode, ...>` is exhaustive: adding a code to the shared
 * registry does not compile until it gets an entry here (its own class, or `DenError` for codes callers rarely
 * catch one by one, such as INTERNAL or ROUTE_NOT_FOUND, which means an SDK and daemon of different versions).
 */
export const ERROR_CLASSES: Record<ErrorCode, DenErrorSubclass | typeof DenError> = {
  INVALID_ARGUMENT: InvalidArgumentError,
  UNAUTHORIZED: UnauthorizedError,
  SANDBOX_NOT_FOUND: SandboxNotFoundError,
  IMAGE_NOT_FOUND: ImageNotFoundError,
  RUNTIME_UNAVAILABLE: RuntimeUnavailableError,
  NAME_TAKEN: NameTakenError,
  SANDBOX_NOT_RUNNING: SandboxNotRunningError,
  SANDBOX_BUSY: SandboxBusyError,
  PROCESS_NOT_FOUND: ProcessNotFoundError,
  EXECUTABLE_NOT_FOUND: ExecutableNotFoundError,
  FILE_NOT_FOUND: FileNotFoundError,
  FILE_EXISTS: FileExistsError,
  NOT_A_DIRECTORY: NotADirectoryError,
  IS_A_DIRECTORY: IsADirectoryError,
  PERMISSION_DENIED: PermissionDeniedError,
  RESOURCE_EXHAUSTED: ResourceExhaustedError,
  DISK_FULL: DiskFullError,
  AGENT_UNAVAILABLE: AgentUnavailableError,
  RUNTIME_FAILED: RuntimeFailedError,
  ROUTE_NOT_FOUND: DenError,
  APP_NOT_FOUND: AppNotFoundError,
  APP_FAILED: AppFailedError,
  API_KEY_NOT_FOUND: ApiKeyNotFoundError,
  API_KEY_EXISTS: ApiKeyExistsError,
  OBJECT_NOT_FOUND: ObjectNotFoundError,
  OBJECT_STORE_FAILED: DenError,
  SNAPSHOT_CORRUPT: SnapshotCorruptError,
  SNAPSHOT_NOT_FOUND: SnapshotNotFoundError,
  IMAGE_EXISTS: ImageExistsError,
  IMAGE_IN_USE: DenError,
  INTERNAL: DenError,
};

/**
 * Rebuilds the typed error for a JSON error body `{code, message, details?, requestId?}` (an HTTP error response
 * or an ERROR frame). Unknown codes and malformed bodies become a plain `DenError` with code INTERNAL carrying
 * `fallbackMessage`.
 *
 * @example
 * ```ts
 * const err = errorFromBody({ code: 'SANDBOX_NOT_FOUND', message: 'no sandbox "dev"' });
 * err instanceof SandboxNotFoundError; // true
 * ```
 */
export function errorFromBody(body: unknown, fallbackMessage?: string): DenError {
  return typed(DenError.fromBody(body, fallbackMessage));
}

/** Returns `err` as an instance of its code's class (a no-op when it already is one). */
export function typed(err: DenError): DenError {
  const cls = ERROR_CLASSES[err.code];
  if (err.constructor === cls) return err;
  if (cls === DenError) return new DenError(err.code, err.message, err.details, err.requestId);
  return new (cls as DenErrorSubclass)(err.message, err.details, err.requestId);
}

/**
 * The daemon could not be reached at all (connection refused, DNS failure, reset before an answer). Not a
 * `DenError`: no daemon produced it, so it has no error code.
 */
export class ConnectionError extends Error {
  /** base URL that was tried */
  readonly url: string;
  /** the system error code when there is one, e.g. `ECONNREFUSED` */
  readonly errno: string | undefined;

  constructor(url: string, cause: unknown) {
    const errno = systemErrorCode(cause);
    const reason = errno ?? innermostMessage(cause);
    super(`cannot reach the den daemon at ${url}${reason ? ` (${reason})` : ''}`, { cause });
    this.name = 'ConnectionError';
    this.url = url;
    this.errno = errno;
  }
}

/** The daemon did not answer within `requestTimeoutMs`. */
export class RequestTimeoutError extends Error {
  readonly url: string;
  readonly timeoutMs: number;

  constructor(url: string, timeoutMs: number) {
    super(
      `the den daemon at ${url} did not answer within ${timeoutMs} ms; raise requestTimeoutMs if the operation is slow`,
    );
    this.name = 'RequestTimeoutError';
    this.url = url;
    this.timeoutMs = timeoutMs;
  }
}

/** Finds the errno-style code (`ECONNREFUSED`, ...) in an error or its chain of causes (undici nests them). */
export function systemErrorCode(err: unknown): string | undefined {
  let current: unknown = err;
  for (let depth = 0; depth < 5 && current && typeof current === 'object'; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z0-9_]+$/.test(code)) return code;
    // AggregateError (happy eyeballs tries several addresses) carries the real errors in `errors`.
    const errors = (current as { errors?: unknown }).errors;
    if (Array.isArray(errors) && errors.length > 0) {
      current = errors[0];
      continue;
    }
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/** The message of the deepest `cause` (undici wraps the useful one, e.g. "bad port", in "fetch failed"). */
function innermostMessage(err: unknown): string | undefined {
  let message: string | undefined;
  let current: unknown = err;
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    message = current.message;
    current = current.cause;
  }
  return message === 'fetch failed' ? undefined : message;
}

/**
 * The registry of stable error codes. Every code has an HTTP status (the exhaustive map below makes the compiler
 * ask for one when a code is added) and a documented meaning. The SDK rebuilds a `DenError` from a JSON body
 * `{code, message, details?, requestId?}`, so callers switch on `err.code` or use `instanceof`.
 */
export const ErrorCodes = {
  INVALID_ARGUMENT: 'a request field is missing, malformed or out of range; the message names the field and the fix',
  UNAUTHORIZED: 'the request carries no API key or an unknown one',
  SANDBOX_NOT_FOUND: 'no sandbox with that id or name',
  IMAGE_NOT_FOUND: 'no image with that name',
  RUNTIME_UNAVAILABLE: 'the runtime is unknown or not installed on this machine',
  NAME_TAKEN: 'another sandbox already has that name',
  SANDBOX_NOT_RUNNING: 'the operation needs a running sandbox',
  SANDBOX_BUSY: 'another lifecycle operation on the sandbox is in progress',
  PROCESS_NOT_FOUND: 'no process with that pid is known to the sandbox agent',
  EXECUTABLE_NOT_FOUND: 'the command to run does not exist in the sandbox or is not executable',
  FILE_NOT_FOUND: 'no file or directory at that path in the sandbox',
  FILE_EXISTS: 'a file already exists at that path',
  NOT_A_DIRECTORY: 'a directory was expected at that path',
  IS_A_DIRECTORY: 'a file was expected but the path is a directory',
  PERMISSION_DENIED: 'the sandbox user may not access that path',
  RESOURCE_EXHAUSTED:
    'the sandbox reached its process or memory limit; end some of its processes or create it with larger limits',
  DISK_FULL: "the sandbox's disk limit is reached; free space or create the sandbox with a larger --disk",
  AGENT_UNAVAILABLE: "the sandbox's agent does not answer (the sandbox may be starting, stopping or broken)",
  RUNTIME_FAILED: 'the OCI runtime (runsc or runc) failed; the message carries its error',
  ROUTE_NOT_FOUND: 'no API route for that method and path',
  APP_NOT_FOUND: 'no live preview app was started in that sandbox',
  APP_FAILED: "the live preview app could not be installed or started; the message ends with the app's log",
  API_KEY_NOT_FOUND: 'no API key with that name',
  API_KEY_EXISTS: 'an API key with that name already exists',
  OBJECT_NOT_FOUND: 'no object with that key in the object store (local directory or S3 bucket)',
  OBJECT_STORE_FAILED:
    'the object store (local directory or S3-compatible server) failed or refused an operation; the message carries its error',
  SNAPSHOT_CORRUPT:
    'a stored snapshot does not match its manifest (checksum or size); nothing was restored, take a new snapshot',
  SNAPSHOT_NOT_FOUND: 'no snapshot with that id or name in the object store',
  IMAGE_EXISTS: 'an image with that name already exists',
  IMAGE_IN_USE: 'sandboxes were created from that image; remove them first',
  INTERNAL: 'an unexpected error in den; the requestId finds it in the daemon log',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

/** HTTP status for every code. `Record<ErrorCode, ...>` is exhaustive: a new code does not compile without one. */
export const ErrorStatus: Record<ErrorCode, number> = {
  INVALID_ARGUMENT: 400,
  UNAUTHORIZED: 401,
  SANDBOX_NOT_FOUND: 404,
  IMAGE_NOT_FOUND: 404,
  RUNTIME_UNAVAILABLE: 400,
  NAME_TAKEN: 409,
  SANDBOX_NOT_RUNNING: 409,
  SANDBOX_BUSY: 409,
  PROCESS_NOT_FOUND: 404,
  EXECUTABLE_NOT_FOUND: 400,
  FILE_NOT_FOUND: 404,
  FILE_EXISTS: 409,
  NOT_A_DIRECTORY: 400,
  IS_A_DIRECTORY: 400,
  PERMISSION_DENIED: 403,
  RESOURCE_EXHAUSTED: 429,
  DISK_FULL: 507,
  AGENT_UNAVAILABLE: 503,
  RUNTIME_FAILED: 500,
  ROUTE_NOT_FOUND: 404,
  APP_NOT_FOUND: 404,
  APP_FAILED: 422,
  API_KEY_NOT_FOUND: 404,
  API_KEY_EXISTS: 409,
  OBJECT_NOT_FOUND: 404,
  OBJECT_STORE_FAILED: 502,
  SNAPSHOT_CORRUPT: 422,
  SNAPSHOT_NOT_FOUND: 404,
  IMAGE_EXISTS: 409,
  IMAGE_IN_USE: 409,
  INTERNAL: 500,
};

export interface ErrorBody {
  code: ErrorCode;
  message: string;
  details?: Record<string, unknown>;
  requestId?: string;
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ErrorCodes, value);
}

/** The one error type that crosses every boundary (agent -> daemon -> HTTP -> SDK -> CLI). */
export class DenError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;
  readonly requestId: string | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, requestId?: string) {
    super(message);
    this.name = 'DenError';
    this.code = code;
    this.details = details;
    this.requestId = requestId;
  }

  get status(): number {
    return ErrorStatus[this.code];
  }

  toJSON(): ErrorBody {
    const body: ErrorBody = { code: this.code, message: this.message };
    if (this.details) body.details = this.details;
    if (this.requestId) body.requestId = this.requestId;
    return body;
  }

  /** Rebuilds an error from a JSON body; unknown or malformed bodies become INTERNAL with the raw text. */
  static fromBody(body: unknown, fallbackMessage = 'unexpected error'): DenError {
    if (body && typeof body === 'object') {
      const b = body as Partial<ErrorBody>;
      if (isErrorCode(b.code) && typeof b.message === 'string') {
        return new DenError(b.code, b.message, b.details, b.requestId);
      }
    }
    return new DenError('INTERNAL', fallbackMessage);
  }
}

/** Maps a Node.js errno code from a file operation to den's code. */
export function errnoToCode(errno: string | undefined): ErrorCode {
  switch (errno) {
    case 'ENOENT':
      return 'FILE_NOT_FOUND';
    case 'EEXIST':
    case 'ENOTEMPTY':
      return 'FILE_EXISTS';
    case 'ENOTDIR':
      return 'NOT_A_DIRECTORY';
    case 'EISDIR':
      return 'IS_A_DIRECTORY';
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return 'PERMISSION_DENIED';
    case 'ENOSPC':
    case 'EDQUOT':
      return 'DISK_FULL';
    case 'EINVAL':
    case 'ENAMETOOLONG':
    case 'ELOOP':
      return 'INVALID_ARGUMENT';
    default:
      return 'INTERNAL';
  }
}

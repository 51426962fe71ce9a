import { Code, ConnectError } from '@connectrpc/connect';
import { DenError, type ErrorCode } from '@den/shared';

/**
 * den's error codes as Connect codes. The e2b SDK turns not_found into NotFoundError (and `exists()` into false,
 * `commands.kill()` into false), already_exists into `makeDir() === false`, invalid_argument into
 * InvalidArgumentError, unavailable into its "sandbox timeout" error and deadline_exceeded into TimeoutError.
 */
const CONNECT_CODE: Record<ErrorCode, Code> = {
  INVALID_ARGUMENT: Code.InvalidArgument,
  UNAUTHORIZED: Code.Unauthenticated,
  SANDBOX_NOT_FOUND: Code.NotFound,
  IMAGE_NOT_FOUND: Code.NotFound,
  RUNTIME_UNAVAILABLE: Code.Unavailable,
  NAME_TAKEN: Code.AlreadyExists,
  SANDBOX_NOT_RUNNING: Code.Unavailable,
  SANDBOX_BUSY: Code.Unavailable,
  PROCESS_NOT_FOUND: Code.NotFound,
  EXECUTABLE_NOT_FOUND: Code.InvalidArgument,
  FILE_NOT_FOUND: Code.NotFound,
  FILE_EXISTS: Code.AlreadyExists,
  NOT_A_DIRECTORY: Code.InvalidArgument,
  IS_A_DIRECTORY: Code.InvalidArgument,
  PERMISSION_DENIED: Code.PermissionDenied,
  RESOURCE_EXHAUSTED: Code.ResourceExhausted,
  DISK_FULL: Code.ResourceExhausted,
  AGENT_UNAVAILABLE: Code.Unavailable,
  RUNTIME_FAILED: Code.Internal,
  ROUTE_NOT_FOUND: Code.NotFound,
  APP_NOT_FOUND: Code.NotFound,
  APP_FAILED: Code.Internal,
  API_KEY_NOT_FOUND: Code.NotFound,
  API_KEY_EXISTS: Code.AlreadyExists,
  OBJECT_NOT_FOUND: Code.NotFound,
  OBJECT_STORE_FAILED: Code.Unavailable,
  SNAPSHOT_CORRUPT: Code.DataLoss,
  SNAPSHOT_NOT_FOUND: Code.NotFound,
  IMAGE_EXISTS: Code.AlreadyExists,
  IMAGE_IN_USE: Code.FailedPrecondition,
  INTERNAL: Code.Internal,
};

/** A thrown error as the ConnectError a handler must raise; ConnectErrors pass through. */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof DenError) return new ConnectError(err.message, CONNECT_CODE[err.code]);
  return new ConnectError(`unexpected error in den: ${(err as Error)?.message ?? String(err)}`, Code.Internal);
}

/** Runs a handler body, rethrowing its failure as a ConnectError. */
export async function rpc<T>(body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (err) {
    throw toConnectError(err);
  }
}

/**
 * HTTP status for the plain envd endpoints (/files, /envs). envd answers `{code: <status>, message}` and the SDK
 * maps 400 to InvalidArgumentError, 401 to AuthenticationError, 404 to FileNotFoundError, 507 to
 * NotEnoughSpaceError; den's own status map agrees with those for every code the file endpoints raise.
 */
export function httpStatusOf(err: unknown): { status: number; message: string } {
  if (!(err instanceof DenError)) {
    return { status: 500, message: `unexpected error in den: ${(err as Error)?.message ?? String(err)}` };
  }
  switch (err.code) {
    // The SDK reads 502 as "the sandbox is not running any more".
    case 'SANDBOX_NOT_RUNNING':
    case 'AGENT_UNAVAILABLE':
      return { status: 502, message: err.message };
    // envd answers 400 for an upload onto a directory or over something it cannot replace.
    case 'FILE_EXISTS':
      return { status: 400, message: err.message };
    default:
      return { status: err.status, message: err.message };
  }
}

import { DenError } from '@den/shared';
import type { FastifyError, FastifyInstance } from 'fastify';
import { validationMessage } from '../../api/errors.js';

/**
 * An error in E2B's shape: HTTP status plus body `{code, message}` where `code` repeats the status as a number.
 * The SDK reads `code` from the body (`res.error?.code === 404` turns into SandboxNotFoundError) and puts
 * `message` into the error it throws.
 */
export class E2BApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'E2BApiError';
  }
}

export interface E2BErrorBody {
  code: number;
  message: string;
}

/**
 * The 401 answer. The SDK turns it into AuthenticationError: "Unauthorized, please check your credentials. -
 * <message>", so the message says where den keys come from.
 */
export const INVALID_API_KEY_MESSAGE =
  'Invalid API key: send a den API key as X-API-KEY (E2B_API_KEY); create one with `den key create --name NAME`';

function toE2BError(err: FastifyError | Error): E2BApiError {
  if (err instanceof E2BApiError) return err;
  if (err instanceof DenError) return new E2BApiError(err.status, err.message);
  const fe = err as FastifyError;
  if (fe.validation) {
    return new E2BApiError(400, validationMessage(fe.validationContext ?? 'request', fe.validation));
  }
  if (fe.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || fe.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') {
    return new E2BApiError(400, `the request body is not valid JSON: ${fe.message}`);
  }
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return new E2BApiError(fe.statusCode, fe.message);
  }
  return new E2BApiError(500, 'internal error in den: see the daemon log for this request');
}

/** Every error of the routes in `scope` leaves as E2B's `{code, message}` (den's own API keeps its shape). */
export function installE2BErrorHandling(scope: FastifyInstance): void {
  scope.setErrorHandler((err: FastifyError, req, reply) => {
    const e2b = toE2BError(err);
    if (e2b.status >= 500) req.log.error({ err }, 'E2B API internal error');
    else req.log.info({ status: e2b.status, msg: e2b.message }, 'E2B API request failed');
    if (reply.sent || reply.raw.headersSent) {
      reply.raw.destroy();
      return;
    }
    const body: E2BErrorBody = { code: e2b.status, message: e2b.message };
    void reply.status(e2b.status).send(body);
  });
}

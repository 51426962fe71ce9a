import { DenError, type ErrorBody, SANDBOX_NAME_HINT } from '@den/shared';
import type { FastifyError, FastifyInstance } from 'fastify';

interface AjvIssue {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}

/** Turns the first schema violation into one sentence that names the field and what to fix. */
export function validationMessage(context: string, issues: AjvIssue[]): string {
  const issue = issues[0];
  if (!issue) return `${context} is invalid`;
  const field = issue.instancePath.replace(/^\//, '').replaceAll('/', '.');
  const where = field ? `${field}` : context;
  switch (issue.keyword) {
    case 'additionalProperties':
      if (field === 'env') {
        return `env name "${String(issue.params.additionalProperty)}" is not valid: use letters, digits and _ (not starting with a digit)`;
      }
      return `unknown field "${String(issue.params.additionalProperty)}" in ${field || context}: remove it`;
    case 'required':
      return `${field ? `${field}.` : ''}${String(issue.params.missingProperty)} is required in the ${context}`;
    case 'pattern':
      if (field === 'name') return `name is not valid: ${SANDBOX_NAME_HINT}`;
      return `${where} has an invalid format (must match ${String(issue.params.pattern)})`;
    default:
      return `${where} ${issue.message ?? 'is invalid'}`;
  }
}

function toDenError(err: FastifyError): DenError {
  if (err instanceof DenError) return err;
  if (err.validation) {
    return new DenError(
      'INVALID_ARGUMENT',
      validationMessage(err.validationContext ?? 'request', err.validation as AjvIssue[]),
    );
  }
  if (
    err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' ||
    err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' ||
    err.name === 'SyntaxError'
  ) {
    return new DenError('INVALID_ARGUMENT', `the request body is not valid JSON: ${err.message}`);
  }
  if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    return new DenError(
      'INVALID_ARGUMENT',
      `unsupported content type: send application/json (or application/octet-stream for file contents)`,
    );
  }
  if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
    return new DenError('INVALID_ARGUMENT', err.message);
  }
  return new DenError('INTERNAL', 'internal error: see the daemon log for this requestId');
}

/** Every error leaves the API as `{code, message, details?, requestId}` with the status from the registry. */
export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, req, reply) => {
    const den = toDenError(err);
    if (den.code === 'INTERNAL') req.log.error({ err }, 'internal error');
    else req.log.info({ code: den.code, msg: den.message }, 'request failed');
    const body: ErrorBody = { ...den.toJSON(), requestId: req.id };
    if (reply.sent || reply.raw.headersSent) {
      reply.raw.destroy();
      return;
    }
    void reply.status(den.status).send(body);
  });
  app.setNotFoundHandler((req, reply) => {
    const body: ErrorBody = {
      code: 'ROUTE_NOT_FOUND',
      message: `no route ${req.method} ${req.url.split('?')[0]}: see /openapi.json for the API`,
      requestId: req.id,
    };
    void reply.status(404).send(body);
  });
}

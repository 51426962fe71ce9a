/**
 * The parts of @den/shared the agent uses, imported through the package's subpath exports. The package index also
 * loads the REST API schemas (typebox), which would cost the agent ~120-190 ms of startup and ~15 MiB of RSS in
 * every sandbox; the subpaths load only the frame, error and path modules.
 */

export type { ErrorBody, ErrorCode } from '@den/shared/errors';
export { DenError, ErrorStatus, errnoToCode, isErrorCode } from '@den/shared/errors';
export type { Frame } from '@den/shared/frames';
export { decodeJson, encodeFrame, encodeJsonFrame, FrameDecoder, FrameType, MAX_FRAME_BYTES } from '@den/shared/frames';
export type { ExitInfo, FileEntry, FileType, ProcessInfo, ProcessSpec, PtySize } from '@den/shared/process';
export { checkSandboxPath } from '@den/shared/sandbox-path';

import { GatewayError, type ErrorCode } from '../../core/errors.js';

/**
 * An error TorchServe itself answered with. `status` and `type` are
 * TorchServe's own (the HTTP status and the exception name of its REST error
 * JSON), kept so the TorchServe front door can answer a TorchServe client
 * exactly as TorchServe did; `code` is the gateway's reading of it.
 */
export class TorchServeError extends GatewayError {
  constructor(
    code: ErrorCode,
    message: string,
    readonly status: number,
    readonly type: string,
  ) {
    super(code, message);
  }
}

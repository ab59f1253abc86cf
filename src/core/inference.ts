import type { Parameters } from './parameters.js';
import type { Tensor } from './tensor.js';

/** An output the client asked for by name; none listed means every output. */
export interface RequestedOutput {
  readonly name: string;
  readonly parameters?: Parameters;
}

/**
 * One inference request, whatever transport it came in on. `model` and
 * `version` name the public model at the API edge and the backend's model once
 * routing has chosen a target. An empty version means "the server's choice".
 */
export interface InferRequest {
  readonly model: string;
  readonly version: string;
  readonly id?: string;
  readonly parameters?: Parameters;
  readonly inputs: readonly Tensor[];
  readonly outputs?: readonly RequestedOutput[];
}

export interface InferResponse {
  readonly model: string;
  readonly version: string;
  readonly id?: string;
  readonly parameters?: Parameters;
  readonly outputs: readonly Tensor[];
}

/**
 * A KServe v2 REST inference body as bytes: JSON, or JSON followed by binary
 * tensor data (the binary tensor extension, with the JSON's length in
 * Inference-Header-Content-Length).
 */
export interface V2RestBody {
  readonly contentType: string;
  /** The Inference-Header-Content-Length value; absent for an all-JSON body. */
  readonly headerLength?: number;
  readonly bytes: Buffer;
}

export interface TensorMetadata {
  readonly name: string;
  /** A v2 datatype name; kept as a string since servers may report types we do not carry. */
  readonly datatype: string;
  /** -1 marks a variable-size dimension. */
  readonly shape: readonly number[];
}

export interface ModelMetadata {
  readonly name: string;
  readonly versions: readonly string[];
  readonly platform: string;
  readonly inputs: readonly TensorMetadata[];
  readonly outputs: readonly TensorMetadata[];
}

export interface ServerMetadata {
  readonly name: string;
  readonly version: string;
  readonly extensions: readonly string[];
}

/** One row of the model index (Triton's repository index shape). */
export interface ModelIndexEntry {
  readonly name: string;
  readonly version: string;
  readonly state: 'READY' | 'UNAVAILABLE';
  readonly reason: string;
}

import type * as grpc from '@grpc/grpc-js';
import type { InferenceService } from '../../routing/inference-service.js';
import type { GrpcApiOptions } from './calls.js';
import { addTfServingServices } from './tfserving.js';
import { addTorchServeServices } from './torchserve.js';

/**
 * A gRPC service in another server's format (TF Serving's PredictionService,
 * TorchServe's InferenceAPIsService) on the gateway's gRPC port, so existing
 * clients call the gateway unchanged, through the same InferenceService.
 */
export type GrpcFrontDoor = (server: grpc.Server, service: InferenceService, opts: GrpcApiOptions) => void;

export const GRPC_FRONT_DOORS: readonly GrpcFrontDoor[] = [addTfServingServices, addTorchServeServices];

import { describe, expect, it } from 'vitest';
import type { ModelMetadata } from '../../../src/core/inference.js';
import {
  decodeSignatureDefMap,
  encodeSignatureDefMap,
  PREDICTION_SERVICE,
  type GetModelMetadataResponseMessage,
} from '../../../src/protocols/tfserving/grpc-proto.js';
import {
  findSignature,
  modelSpecFor,
  readyFromStatus,
  reportedVersion,
  servedVersion,
  signatureDefMapFor,
  signatureToMetadata,
  versionOfModelSpec,
} from '../../../src/protocols/tfserving/signature.js';

describe('ModelSpec and versions', () => {
  it('digits are a version, other strings a label, empty neither', () => {
    expect(modelSpecFor('m', '3', 'sig')).toEqual({ name: 'm', version: { value: '3' }, signature_name: 'sig' });
    expect(modelSpecFor('m', 'canary')).toEqual({ name: 'm', version_label: 'canary' });
    expect(modelSpecFor('m', '')).toEqual({ name: 'm' });
  });

  it('reads the version a client asked for', () => {
    expect(versionOfModelSpec({ name: 'm', version: { value: '12' } })).toBe('12');
    expect(versionOfModelSpec({ name: 'm', version: {} })).toBe('0'); // Int64Value{} is version 0
    expect(versionOfModelSpec({ name: 'm', version_label: 'stable' })).toBe('stable');
    expect(versionOfModelSpec({ name: 'm' })).toBe('');
    expect(versionOfModelSpec(undefined)).toBe('');
  });

  it('reads the version a server names (gRPC wrapper or REST string)', () => {
    expect(servedVersion({ version: { value: '2' } })).toBe('2');
    expect(servedVersion({ version: '2' })).toBe('2');
    expect(servedVersion({ name: 'm' })).toBeUndefined();
  });

  it('reports a numeric version: the one asked for, else the newest listed', () => {
    expect(reportedVersion('3', ['1', '2'])).toBe('3');
    expect(reportedVersion('', ['1', '10', '2'])).toBe('10');
    expect(reportedVersion('stable', ['1'])).toBe('1');
    expect(reportedVersion('', ['1.0'])).toBe('');
  });

  it('readiness from status: any AVAILABLE version', () => {
    expect(readyFromStatus({ model_version_status: [{ version: '2', state: 'LOADING' }, { version: '1', state: 'AVAILABLE' }] })).toBe(true);
    expect(readyFromStatus({ model_version_status: [{ version: '1', state: 'END' }] })).toBe(false);
    expect(readyFromStatus({})).toBe(false);
  });
});

describe('SignatureDefMap over gRPC (inside google.protobuf.Any)', () => {
  const meta: ModelMetadata = {
    name: 'linear',
    versions: ['1', '2'],
    platform: 'triton',
    inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [-1, 4] }],
    outputs: [
      { name: 'SCORES', datatype: 'FP32', shape: [-1, 3] },
      { name: 'CLASS', datatype: 'INT64', shape: [-1] },
    ],
  };

  it('v2 metadata -> serving_default -> Any bytes -> the same metadata', () => {
    const value = encodeSignatureDefMap(signatureDefMapFor(meta));
    const method = PREDICTION_SERVICE.GetModelMetadata!;
    const reply = method.responseDeserialize(
      method.responseSerialize({
        model_spec: { name: 'linear', version: { value: '2' } },
        metadata: { signature_def: { type_url: 'type.googleapis.com/tensorflow.serving.SignatureDefMap', value } },
      } satisfies GetModelMetadataResponseMessage),
    ) as GetModelMetadataResponseMessage;
    const map = decodeSignatureDefMap(reply.metadata!.signature_def!.value!);
    const sig = findSignature(map, 'serving_default', 'linear');
    expect(sig.method_name).toBe('tensorflow/serving/predict');
    expect(sig.inputs!.INPUT0).toMatchObject({ name: 'INPUT0', dtype: 'DT_FLOAT', tensor_shape: { dim: [{ size: '-1' }, { size: '4' }] } });
    expect(signatureToMetadata(sig, 'serving_default', 'linear', [servedVersion(reply.model_spec)!])).toEqual({
      ...meta,
      versions: ['2'],
      platform: 'tensorflow_serving',
    });
  });

  it('garbage bytes do not decode', () => {
    expect(() => decodeSignatureDefMap(Buffer.from([0x0a, 0xff, 0xff]))).toThrow();
  });
});

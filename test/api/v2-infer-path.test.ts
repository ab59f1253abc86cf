import { describe, expect, it } from 'vitest';
import { v2InferPath } from '../../src/api/http/v2-infer.js';

// The REST hot path (api/http/v2-infer.ts) claims exactly the v2 inference URLs; any other path goes to the Hono
// app, so what it refuses to claim matters as much as what it reads.
describe('v2InferPath', () => {
  it('reads the model, and the version when there is one', () => {
    expect(v2InferPath('/v2/models/linear/infer')).toEqual({ model: 'linear', version: '', raw: '/v2/models/linear/infer' });
    expect(v2InferPath('/v2/models/linear/versions/2/infer')).toEqual({ model: 'linear', version: '2', raw: '/v2/models/linear/versions/2/infer' });
  });

  it('drops the query string and the fragment, and decodes segments as route parameters are', () => {
    expect(v2InferPath('/v2/models/linear/infer?x=1')?.model).toBe('linear');
    expect(v2InferPath('/v2/models/linear/infer#f')?.model).toBe('linear');
    expect(v2InferPath('/v2/models/sp%20ace/versions/v%31/infer')).toMatchObject({ model: 'sp ace', version: 'v1' });
    // A malformed escape stays as it is (the router leaves it so too).
    expect(v2InferPath('/v2/models/bad%zzname/infer')?.model).toBe('bad%zzname');
    // Dot segments are claimed (and refused with a 400 by the listener), encoded or not.
    expect(v2InferPath('/v2/models/%2e%2e/infer')?.model).toBe('..');
  });

  it('leaves every other path to the app', () => {
    for (const url of [
      undefined,
      '/v2/models/linear',
      '/v2/models/linear/ready',
      '/v2/models//infer',
      '/v2/models/linear/infer/',
      '/v2/models/linear/versions//infer',
      '/v2/models/linear/versions/1/2/infer',
      '/v2/models/linear/other/1/infer',
      '/v2/models/a/b/infer',
      '/V2/models/linear/infer',
      '/v2/repository/index',
      '/v1/models/linear:predict',
    ]) {
      expect(v2InferPath(url), String(url)).toBeUndefined();
    }
  });
});

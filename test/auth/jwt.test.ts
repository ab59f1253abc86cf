import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { credentials, grpc, grpcClients, sha256, unary, V2_LINEAR_REQUEST, type GrpcClients } from '../helpers/auth.js';
import { call, type HttpReply } from '../helpers/http.js';
import { freePort } from '../helpers/redis.js';
import { LINEAR_REQUEST, liveText, startLiveGateway, type LiveGateway } from '../helpers/live.js';

/** JWTs verified against a JWKS served by a loopback HTTP server (as an identity provider publishes it), and from a file. */
const ISSUER = 'https://idp.test/';
const AUDIENCE = 'infergate';
const KID = 'key-1';

let triton: TritonReference;
let jwksServer: Server;
let jwksUrl: string;
let jwksFetches = 0;
let privateKey: CryptoKey;
let publicJwk: JWK;
let otherKey: CryptoKey;
let gw: LiveGateway;
let clients: GrpcClients;

beforeAll(async () => {
  triton = await startTritonReference({ host: '127.0.0.1' });
  const pair = await generateKeyPair('ES256', { extractable: true });
  privateKey = pair.privateKey;
  publicJwk = { ...(await exportJWK(pair.publicKey)), kid: KID, alg: 'ES256', use: 'sig' };
  otherKey = (await generateKeyPair('ES256')).privateKey;
  jwksServer = createServer((req, res) => {
    if (req.url !== '/.well-known/jwks.json') {
      res.writeHead(404).end();
      return;
    }
    jwksFetches++;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [publicJwk] }));
  });
  jwksServer.listen(0, '127.0.0.1');
  await once(jwksServer, 'listening');
  jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/.well-known/jwks.json`;
  const auth = `auth:
  api_keys:
    - { name: plain, key_sha256: "${sha256('plain-key')}", models: [simple] }
  jwt: { jwks_url: "${jwksUrl}", issuer: "${ISSUER}", audience: ${AUDIENCE} }`;
  gw = await startLiveGateway(liveText(triton, { auth, models: '  rank-a: { backend: triton-grpc, model: linear }' }), { env: {} });
  clients = grpcClients(`127.0.0.1:${gw.gateway.grpcPort}`);
});
afterAll(async () => {
  clients?.close();
  await gw?.close();
  jwksServer?.close();
  await triton?.close();
});

interface TokenOptions {
  scope?: string | string[];
  issuer?: string;
  audience?: string;
  /** Seconds from now; negative: already expired. */
  expiresIn?: number;
  key?: CryptoKey;
  kid?: string;
  subject?: string;
}

function token(o: TokenOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ scope: o.scope ?? 'model:linear' })
    .setProtectedHeader({ alg: 'ES256', kid: o.kid ?? KID })
    .setIssuer(o.issuer ?? ISSUER)
    .setAudience(o.audience ?? AUDIENCE)
    .setSubject(o.subject ?? 'svc-1')
    .setIssuedAt(now - 10)
    .setExpirationTime(now + (o.expiresIn ?? 300))
    .sign(o.key ?? privateKey);
}

function infer(model: string, credential?: string): Promise<HttpReply> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (credential !== undefined) headers.authorization = `Bearer ${credential}`;
  return call(gw.pool, 'POST', `/v2/models/${model}/infer`, LINEAR_REQUEST, headers);
}

function expectError(res: HttpReply, status: number, pattern: RegExp): void {
  expect(res.status, res.text()).toBe(status);
  expect(res.json<{ error: string }>().error).toMatch(pattern);
}

describe('JWT', () => {
  it("a token's model scopes: exact names and prefixes; a model outside them is 403", async () => {
    const t = await token({ scope: 'openid model:linear model:rank*' });
    expect((await infer('linear', t)).status).toBe(200);
    expect((await infer('rank-a', t)).status).toBe(200);
    expectError(await infer('simple', t), 403, /token of 'svc-1' has no access to model 'simple'/);
    // Scopes as a list of strings work too.
    expect((await infer('linear', await token({ scope: ['model:linear'] }))).status).toBe(200);
  });

  it('expired, from another issuer, for another audience, signed by another key: 401', async () => {
    const expired = await infer('linear', await token({ expiresIn: -120 }));
    expectError(expired, 401, /invalid token: expired/);
    expect(expired.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
    expectError(await infer('linear', await token({ issuer: 'https://evil.test/' })), 401, /invalid token: .*claim 'iss'/);
    expectError(await infer('linear', await token({ audience: 'someone-else' })), 401, /invalid token: .*claim 'aud'/);
    expectError(await infer('linear', await token({ key: otherKey })), 401, /invalid token: bad signature/);
    expectError(await infer('linear', await token({ key: otherKey, kid: 'unknown-kid' })), 401, /invalid token: signed by an unknown key/);
    expectError(await infer('linear', 'aaa.bbb.ccc'), 401, /invalid token/);
  });

  it('the admin scope opens the admin API; others are refused', async () => {
    expect((await call(gw.pool, 'GET', '/admin/config', undefined, { authorization: `Bearer ${await token({ scope: 'infergate:admin' })}` })).status).toBe(200);
    const res = await call(gw.pool, 'GET', '/admin/config', undefined, { authorization: `Bearer ${await token()}` });
    expectError(res, 403, /token of 'svc-1' lacks the admin scope/);
  });

  it('API keys still work beside tokens', async () => {
    expectError(await infer('linear', 'plain-key'), 403, /API key 'plain' has no access to model 'linear'/);
    expectError(await infer('linear', 'not-a-key'), 401, /invalid API key/);
  });

  it('gRPC takes tokens in metadata', async () => {
    const t = await token({ subject: 'grpc-client' });
    expect((await unary(clients.v2, 'ModelInfer', V2_LINEAR_REQUEST('linear'), credentials(t))).error).toBeUndefined();
    const denied = (await unary(clients.v2, 'ModelInfer', V2_LINEAR_REQUEST('simple'), credentials(t))).error;
    expect(denied?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(denied?.details).toMatch(/token of 'grpc-client' has no access to model 'simple'/);
    const expired = (await unary(clients.v2, 'ModelInfer', V2_LINEAR_REQUEST('linear'), credentials(await token({ expiresIn: -120 })))).error;
    expect(expired?.code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it('the key set is fetched once and cached, not per request', async () => {
    const t = await token();
    for (let i = 0; i < 20; i++) expect((await infer('linear', t)).status).toBe(200);
    // Once at the first token; an unknown kid may refetch once more (jose's cooldown keeps it from doing so again).
    expect(jwksFetches).toBeGreaterThanOrEqual(1);
    expect(jwksFetches).toBeLessThanOrEqual(2);
  });
});

describe('JWT key sets from a file, and unreachable', () => {
  it('jwks_file: tokens verify against the file read when the config is applied', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'infergate-jwks-'));
    const file = join(dir, 'jwks.json');
    await writeFile(file, JSON.stringify({ keys: [publicJwk] }));
    const own = await startLiveGateway(liveText(triton, { auth: `auth:\n  jwt: { jwks_file: "${file}", issuer: "${ISSUER}" }` }), { env: {} });
    try {
      const res = await call(own.pool, 'POST', '/v2/models/linear/infer', LINEAR_REQUEST, { authorization: `Bearer ${await token()}` });
      expect(res.status, res.text()).toBe(200);
    } finally {
      await own.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a JWKS that cannot be fetched: 503 with Retry-After (the client is not at fault)', async () => {
    const port = await freePort();
    const own = await startLiveGateway(liveText(triton, { auth: `auth:\n  jwt: { jwks_url: "http://127.0.0.1:${port}/jwks.json" }` }), { env: {} });
    try {
      const res = await call(own.pool, 'POST', '/v2/models/linear/infer', LINEAR_REQUEST, { authorization: `Bearer ${await token()}` });
      expectError(res, 503, /key set \(JWKS\) is unavailable/);
      expect(res.headers['retry-after']).toBe('1');
    } finally {
      await own.close();
    }
  });
});

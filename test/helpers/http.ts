import type { Pool } from 'undici';

export interface HttpReply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
  json<T = unknown>(): T;
  text(): string;
}

export async function call(
  pool: Pool,
  method: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH',
  path: string,
  body?: string | Buffer,
  headers: Record<string, string> = {},
): Promise<HttpReply> {
  const res = await pool.request({ method, path, body: body ?? null, headers });
  const data = Buffer.from(await res.body.arrayBuffer());
  return {
    status: res.statusCode,
    headers: res.headers,
    body: data,
    json: <T>() => JSON.parse(data.toString('utf8')) as T,
    text: () => data.toString('utf8'),
  };
}

export function postJson(pool: Pool, path: string, value: unknown, headers: Record<string, string> = {}): Promise<HttpReply> {
  return call(pool, 'POST', path, JSON.stringify(value), { 'content-type': 'application/json', ...headers });
}

/** A request with the binary tensor extension: JSON header then the blobs. */
export function postBinary(pool: Pool, path: string, header: unknown, blobs: readonly Buffer[]): Promise<HttpReply> {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  return call(pool, 'POST', path, Buffer.concat([json, ...blobs]), {
    'content-type': 'application/octet-stream',
    'inference-header-content-length': String(json.length),
  });
}

/** Splits a binary-extension reply into its JSON header and the blob section. */
export function splitBinaryReply(reply: HttpReply): { header: Record<string, unknown>; blobs: Buffer } {
  const length = Number(reply.headers['inference-header-content-length']);
  return {
    header: JSON.parse(reply.body.subarray(0, length).toString('utf8')) as Record<string, unknown>,
    blobs: reply.body.subarray(length),
  };
}

/** The literal text of an output's `data` array, for checking 64-bit integers JSON.parse would round. */
export function rawDataText(body: string, outputName: string): string {
  const at = body.indexOf(`"name":"${outputName}"`);
  const match = /"data":\[([^\]]*)\]/.exec(body.slice(at));
  if (at < 0 || !match) throw new Error(`no data for output ${outputName} in ${body.slice(0, 200)}`);
  return match[1]!;
}

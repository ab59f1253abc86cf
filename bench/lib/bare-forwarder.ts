// The "bare forwarder" row of bench/compare.ts: the least a Node proxy can do (node:http in, undici Pool.request
// out, one keep-alive pool), as the floor for what a Node gateway costs. Not a bench itself: it lives in bench/lib/
// so that bench/run.ts (which runs every bench/*.ts) does not pick it up.
//   node --import tsx bench/lib/bare-forwarder.ts --upstream 127.0.0.1:PORT [--port N]
// Prints {"http":"127.0.0.1:PORT","grpc":""} once listening.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';

const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const upstream = arg('--upstream');
if (upstream === undefined) throw new Error('usage: bare-forwarder.ts --upstream HOST:PORT [--port N]');
const pool = new Pool(`http://${upstream}`, { connections: 64, pipelining: 1 });

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && k !== 'host' && k !== 'connection') headers[k] = v;
    pool
      .request({ path: req.url ?? '/', method: req.method === 'GET' ? 'GET' : 'POST', headers, body: Buffer.concat(chunks) })
      .then(async (up) => {
        const body = Buffer.from(await up.body.arrayBuffer());
        const ct = up.headers['content-type'];
        res.writeHead(up.statusCode, { 'content-type': typeof ct === 'string' ? ct : 'application/octet-stream', 'content-length': body.length });
        res.end(body);
      })
      .catch(() => {
        res.writeHead(502).end();
      });
  });
});
server.keepAliveTimeout = 65_000;
server.listen(Number(arg('--port') ?? 0), '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`${JSON.stringify({ http: `127.0.0.1:${port}`, grpc: '' })}\n`);
});
const stop = (): void => {
  server.close();
  void pool.close();
  setTimeout(() => process.exit(0), 200).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

// A TCP proxy that can break the path between the gateway and a backend on demand. It works below HTTP and gRPC,
// so the same faults apply to both protocols, and the gateway sees them the way it would see a real network:
// stalls, resets, refused connections and latency, with no cooperation from the backend.
import { Buffer } from 'node:buffer';
import net from 'node:net';

export type FaultMode =
  | { kind: 'pass' }
  /** Each chunk from client to server is forwarded ms after it arrived (order kept). */
  | { kind: 'delay'; ms: number }
  /** Connections are accepted and read, but nothing is forwarded either way (existing connections too). */
  | { kind: 'hang' }
  /** Every connection is reset with an RST: existing ones now, new ones as they are accepted. */
  | { kind: 'reset' }
  /** The port stops listening (connection refused) and existing connections are reset. */
  | { kind: 'refuse' };

export interface FaultProxy {
  /** "127.0.0.1:port" */
  readonly endpoint: string;
  readonly port: number;
  /** Connections accepted since start (to see whether the gateway still sends there). */
  readonly accepted: number;
  /** Client->server bytes forwarded since start. */
  readonly forwardedBytes: number;
  /**
   * Resolves once the mode is in effect. Bytes held during 'hang' flow on when the mode goes back to 'pass' or
   * 'delay', like a network partition that heals; leaving 'refuse' listens again on the same port.
   */
  setMode(mode: FaultMode): Promise<void>;
  /** Closes the listener and destroys every socket. */
  close(): Promise<void>;
}

// Past this many held bytes in one direction the proxy stops reading, so a hang cannot grow without bound.
const MAX_HELD_BYTES = 16 * 1024 * 1024;
const END = Symbol('end');

interface Item {
  readonly data: Buffer | typeof END;
  /** Date.now() before which the item must not be forwarded. */
  readonly due: number;
}

/** One direction of one connection: a queue, so that delays and hangs never reorder bytes. */
class Flow {
  private readonly queue: Item[] = [];
  private queuedBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private waitingForDrain = false;

  constructor(
    private readonly from: net.Socket,
    private readonly to: net.Socket,
    private readonly proxy: Proxy,
    private readonly upstream: boolean,
  ) {
    from.on('data', (chunk: Buffer) => this.push(chunk));
    from.on('end', () => this.push(END));
  }

  private push(data: Buffer | typeof END): void {
    const mode = this.proxy.mode;
    const due = this.upstream && mode.kind === 'delay' ? Date.now() + mode.ms : Date.now();
    this.queue.push({ data, due });
    if (data !== END) this.queuedBytes += data.length;
    if (this.queuedBytes > MAX_HELD_BYTES) this.from.pause();
    this.pump();
  }

  pump(): void {
    if (this.timer !== undefined || this.waitingForDrain) return;
    while (this.queue.length > 0) {
      if (this.proxy.mode.kind === 'hang' || this.to.destroyed) return;
      const item = this.queue[0]!;
      const wait = item.due - Date.now();
      if (wait > 0) {
        this.timer = setTimeout(() => {
          this.timer = undefined;
          this.pump();
        }, wait);
        return;
      }
      this.queue.shift();
      if (item.data === END) {
        this.to.end();
        continue;
      }
      this.queuedBytes -= item.data.length;
      if (this.upstream) this.proxy.forwardedBytes += item.data.length;
      if (!this.to.write(item.data)) {
        this.waitingForDrain = true;
        this.from.pause();
        this.to.once('drain', () => {
          this.waitingForDrain = false;
          this.pump();
        });
        return;
      }
    }
    if (this.from.isPaused() && !this.from.destroyed) this.from.resume();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
  }
}

class Connection {
  private readonly upstream: net.Socket;
  private readonly flows: Flow[];
  private done = false;

  constructor(private readonly client: net.Socket, target: { host: string; port: number }, private readonly proxy: Proxy) {
    const upstream = net.connect({ host: target.host, port: target.port, allowHalfOpen: true });
    this.upstream = upstream;
    this.flows = [new Flow(client, upstream, proxy, true), new Flow(upstream, client, proxy, false)];
    // A reset or failure on one side becomes a reset on the other, as a router in the path would pass it on.
    client.on('error', () => this.reset());
    upstream.on('error', () => this.reset());
    const closed = (): void => {
      if (client.destroyed && upstream.destroyed) this.finish();
    };
    client.on('close', closed);
    upstream.on('close', closed);
  }

  pump(): void {
    for (const flow of this.flows) flow.pump();
  }

  reset(): void {
    if (this.done) return;
    this.finish();
    resetSocket(this.client);
    resetSocket(this.upstream);
  }

  private finish(): void {
    this.done = true;
    for (const flow of this.flows) flow.stop();
    this.proxy.connections.delete(this);
  }
}

function resetSocket(socket: net.Socket): void {
  if (socket.destroyed) return;
  try {
    socket.resetAndDestroy();
  } catch {
    // resetAndDestroy throws on a socket without a TCP handle (already closing); a plain destroy still frees it.
    socket.destroy();
  }
}

class Proxy implements FaultProxy {
  mode: FaultMode = { kind: 'pass' };
  accepted = 0;
  forwardedBytes = 0;
  readonly connections = new Set<Connection>();
  private server: net.Server | undefined;
  private closed = false;
  /** setMode calls run one after another, so that listen and close never interleave. */
  private transition: Promise<void> = Promise.resolve();

  constructor(private readonly target: { host: string; port: number }, public port: number) {}

  get endpoint(): string {
    return `127.0.0.1:${this.port}`;
  }

  async listen(): Promise<void> {
    const server = net.createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
    // The port was just freed by ourselves, but another process may grab it in between: retry briefly.
    for (let attempt = 0; ; attempt++) {
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen({ host: '127.0.0.1', port: this.port }, () => {
            server.off('error', reject);
            resolve();
          });
        });
        break;
      } catch (err) {
        if (attempt >= 20 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || this.port === 0) throw err;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    this.port = (server.address() as net.AddressInfo).port;
    this.server = server;
  }

  private accept(socket: net.Socket): void {
    this.accepted++;
    if (this.closed || this.mode.kind === 'reset' || this.mode.kind === 'refuse') {
      resetSocket(socket);
      return;
    }
    socket.setNoDelay(true);
    this.connections.add(new Connection(socket, this.target, this));
  }

  private async stopListening(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    // close() calls back only once every accepted socket is gone; callers destroy them right after this.
    const done = new Promise<void>((resolve) => server.close(() => resolve()));
    this.resetAll();
    await done;
  }

  private resetAll(): void {
    for (const connection of [...this.connections]) connection.reset();
  }

  setMode(mode: FaultMode): Promise<void> {
    const next = { ...mode } as FaultMode;
    // A failed transition (a lost port) must not wedge the ones after it.
    this.transition = this.transition.catch(() => {}).then(async () => {
      if (this.closed) throw new Error('fault proxy is closed');
      const previous = this.mode;
      this.mode = next;
      if (next.kind === 'refuse') {
        await this.stopListening();
        return;
      }
      if (previous.kind === 'refuse') await this.listen();
      if (next.kind === 'reset') this.resetAll();
      else for (const connection of this.connections) connection.pump();
    });
    return this.transition;
  }

  close(): Promise<void> {
    this.closed = true;
    return this.transition.catch(() => {}).then(() => this.stopListening());
  }
}

function parseTarget(target: string): { host: string; port: number } {
  const match = /^\[?([^\]]+?)\]?:(\d+)$/.exec(target);
  if (!match) throw new Error(`fault proxy target must be host:port, got '${target}'`);
  return { host: match[1]!, port: Number(match[2]) };
}

/** Starts a proxy on 127.0.0.1 (a free port unless opts.port) that forwards to target ("host:port"), in mode 'pass'. */
export async function startFaultProxy(target: string, opts: { port?: number } = {}): Promise<FaultProxy> {
  const proxy = new Proxy(parseTarget(target), opts.port ?? 0);
  await proxy.listen();
  return proxy;
}

// Fixtures of the NATS tests: bridges on a real nats-server, exposed local servers, bounded waits.
import { NatsBridge, type INatsBridgeOptions, type NatsClient, type INatsClientOptions } from '../../ts/nats/index.js';
import { SmartIpc, type IpcClient, type IpcServer, type IIpcServerOptions, type IIpcClientOptions } from '../../ts/index.js';
import { uniqueId, uniqueSocketPath } from './fixtures.js';
import { before, after } from 'node:test';
import { NatsServerProcess } from './nats-server.js';

export { NatsServerProcess };

/** Tracks bridges, clients and servers and closes them in reverse order. */
export class NatsScene {
  private readonly closers: Array<() => Promise<unknown>> = [];
  /** A unique namespace per scene, so tests never see each other's traffic on a shared nats-server. */
  public readonly namespace = `t${process.pid}x${Math.random().toString(36).slice(2, 8)}`;

  constructor(public readonly nats: NatsServerProcess) {}

  public async bridge(options: Partial<INatsBridgeOptions> = {}): Promise<NatsBridge> {
    const bridge = await NatsBridge.connect({ servers: this.nats.url, namespace: this.namespace, reconnectTimeWait: 100, ...options });
    bridge.on('error', () => undefined);
    this.closers.push(() => bridge.close());
    return bridge;
  }

  public async client(bridge: NatsBridge, options: INatsClientOptions): Promise<NatsClient> {
    const client = bridge.createClient(options);
    await client.connect();
    this.closers.push(() => client.disconnect());
    return client;
  }

  /** A started local IpcServer (Unix socket) with the given id. */
  public async server(id = uniqueId('nats'), options: Partial<Omit<Extract<IIpcServerOptions, { socketPath: string }>, 'id' | 'socketPath'>> = {}): Promise<IpcServer> {
    const server = SmartIpc.createServer({ id, socketPath: uniqueSocketPath('nats'), autoCleanupSocketFile: true, heartbeat: false, ...options });
    server.on('error', () => undefined);
    await server.start();
    this.closers.push(() => server.stop({ graceMs: 0 }));
    return server;
  }

  /** A connected local client of a started server (the other side of an exposed hub). */
  public async localClient(server: IpcServer, options: Partial<Omit<Extract<IIpcClientOptions, { socketPath: string }>, 'id' | 'socketPath'>> = {}): Promise<IpcClient> {
    const address = server.getAddress() as { socketPath: string };
    const client = SmartIpc.createClient({ id: server.options.id, socketPath: address.socketPath, clientOnly: true, heartbeat: false, reconnect: { enabled: false }, serialization: server.options.serialization, ...options });
    client.on('error', () => undefined);
    await client.connect();
    this.closers.push(() => client.disconnect());
    return client;
  }

  public onClose(closer: () => Promise<unknown>): void {
    this.closers.push(closer);
  }

  public async close(): Promise<void> {
    for (const close of this.closers.splice(0).reverse()) await close().catch(() => undefined);
  }
}

/** One nats-server for a test file, and scenes on it that close with their test. */
export interface INatsForFile {
  readonly server: NatsServerProcess;
  scene(t: { after(fn: () => Promise<void>): void }): NatsScene;
}

/** Starts a nats-server before the file's tests and stops it (by pid) after them. Call at the top level of a test file. */
export function natsServerForFile(): INatsForFile {
  let server: NatsServerProcess | undefined;
  before(async () => {
    server = await NatsServerProcess.start();
  });
  after(async () => {
    await server?.dispose();
  });
  const started = (): NatsServerProcess => {
    if (server === undefined) throw new Error('the nats-server is started in before(): use it inside a test');
    return server;
  };
  return {
    get server() {
      return started();
    },
    scene(t) {
      const s = new NatsScene(started());
      t.after(() => s.close());
      return s;
    },
  };
}


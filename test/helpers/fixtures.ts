// Shared test fixtures: unique endpoints, server + client pairs on either transport, raw sockets
// and small bounded waits. Every helper here cleans up after itself or returns what to clean up.
import * as childProcess from 'node:child_process';
import * as diagnosticsChannel from 'node:diagnostics_channel';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import type { EventEmitter } from 'node:events';
import {
  EFrameKind,
  EPayloadEncoding,
  FrameDecoder,
  IpcClient,
  IpcError,
  IpcServer,
  SmartIpc,
  defaults,
  encodeFrame,
  type IFrame,
  type IHelloPayload,
  type IIpcClientOptions,
  type IIpcServerOptions,
  type ITcpEndpoint,
  type TIpcErrorCode,
} from '../../ts/internal.js';

export type TTransportKind = 'unix' | 'tcp';

type TEndpointKeys = 'socketPath' | 'host' | 'port' | 'tls';
/** Any endpoint field, loosely: fixtures fill the endpoint in, tests may override parts of it. */
type TLooseEndpoint = { socketPath?: string; host?: string; port?: number; tls?: ITcpEndpoint['tls'] };
/** Server options a test may override (the endpoint is chosen by the fixture). */
export type TServerOverrides = Partial<Omit<Extract<IIpcServerOptions, { socketPath: string }>, TEndpointKeys>> & TLooseEndpoint;
/** Client options a test may override (the endpoint comes from the server). */
export type TClientOverrides = Partial<Omit<Extract<IIpcClientOptions, { socketPath: string }>, TEndpointKeys>> & TLooseEndpoint;
/** Both transports every behavioural test should run on (Linux CI: Unix sockets and TCP). */
export const TRANSPORTS: readonly TTransportKind[] = ['unix', 'tcp'];

let counter = 0;

/** A socket path nobody else uses: smartipc-<name>-<pid>-<counter>.sock in the temp dir. */
export function uniqueSocketPath(name = 'test'): string {
  counter++;
  const safe = name.replace(/[^a-zA-Z0-9_-]+/g, '_').slice(0, 32);
  return path.join(os.tmpdir(), `smartipc-${safe}-${process.pid}-${counter}.sock`);
}

/** A unique service id per call, so tests never talk to each other's servers by accident. */
export function uniqueId(name = 'svc'): string {
  counter++;
  return `${name}-${process.pid}-${counter}`;
}

/** A client-side endpoint: `{ socketPath }` or `{ host, port }`. */
export type TClientEndpoint = { socketPath: string } | { host: string; port: number };

/** The endpoint a server is to be started on for a transport kind (TCP: port 0 on loopback). */
export function serverEndpoint(kind: TTransportKind, name = 'test'): TClientEndpoint {
  return kind === 'unix' ? { socketPath: uniqueSocketPath(name) } : { host: '127.0.0.1', port: 0 };
}

/** Where a started server can be reached (reads the real port back for TCP port 0). */
export function endpointOf(server: IpcServer): TClientEndpoint {
  const address = server.getAddress();
  assert.ok(address, 'server has no address: is it started?');
  if ('socketPath' in address) return { socketPath: address.socketPath };
  const host = address.host === '::' || address.host === '0.0.0.0' ? '127.0.0.1' : address.host;
  return { host, port: address.port };
}

export interface IStartedServer {
  server: IpcServer;
  id: string;
  endpoint: TClientEndpoint;
  /** Stops the server (graceMs 0 unless given) and removes its socket file. Safe to call twice. */
  stop(graceMs?: number): Promise<void>;
}

/** Starts a server on a fresh endpoint of the given kind; `beforeStart` may add handlers and listeners first. */
export async function startServer(
  kind: TTransportKind,
  options: TServerOverrides = {},
  name = 'test',
  beforeStart?: (server: IpcServer) => void,
): Promise<IStartedServer> {
  const id = options.id ?? uniqueId(name);
  const server = SmartIpc.createServer({ ...serverEndpoint(kind, name), ...options, id } as IIpcServerOptions);
  beforeStart?.(server);
  await server.start();
  const endpoint = endpointOf(server);
  return {
    server,
    id,
    endpoint,
    stop: async (graceMs = 0) => {
      await server.stop({ graceMs });
      if ('socketPath' in endpoint) fs.rmSync(endpoint.socketPath, { force: true });
    },
  };
}

/**
 * The handlers behavioural tests lean on: `echo` (answers its data), `whoami` (the caller's
 * clientId), `record` (appends data.seq to `recorded` and answers it), `slow` (answers data.value
 * after data.ms, on an unref'd timer so a handler still waiting does not keep the process alive).
 */
export function addTestHandlers(server: IpcServer, recorded: number[] = []): number[] {
  server.onMessage('echo', (data) => data);
  server.onMessage('whoami', (_data, clientId) => clientId);
  server.onMessage('record', (data: { seq: number }) => {
    recorded.push(data.seq);
    return data.seq;
  });
  server.onMessage('slow', (data: { ms: number; value: unknown }) => new Promise((resolve) => setTimeout(() => resolve(data.value), data.ms).unref()));
  return recorded;
}

export interface ITestServer extends IStartedServer {
  /** Every `record` seq received, in arrival order (shared across restarts if the caller passes it again). */
  recorded: number[];
}

export interface IStartServerAtOptions {
  server?: TServerOverrides;
  /** The `record` log to append to; pass the previous server's to keep one log across restarts. */
  recorded?: number[];
  /** Runs after the test handlers are added and before start (e.g. to catch the first clientConnect). */
  beforeStart?: (server: IpcServer) => void;
}

/**
 * A server with the test handlers on a given socket path and id, for tests that stop and start
 * "the same" server while clients reconnect to it. autoCleanupSocketFile is on, so a file left by
 * a killed predecessor is removed.
 */
export async function startServerAt(socketPath: string, id: string, options: IStartServerAtOptions = {}): Promise<ITestServer> {
  const recorded = options.recorded ?? [];
  const started = await startServer('unix', { autoCleanupSocketFile: true, ...options.server, socketPath, id }, 'at', (server) => {
    addTestHandlers(server, recorded);
    options.beforeStart?.(server);
  });
  return { ...started, recorded };
}

/** The client side of an endpoint given by path: what `makeClient` needs when no server is started yet. */
export function unixTarget(socketPath: string, id: string): Pick<IStartedServer, 'id' | 'endpoint'> {
  return { id, endpoint: { socketPath } };
}

/** Creates (not connects) a client for a server's endpoint; reconnect off unless asked for. */
export function makeClient(started: Pick<IStartedServer, 'id' | 'endpoint'>, options: TClientOverrides = {}): IpcClient {
  return SmartIpc.createClient({
    ...started.endpoint,
    id: started.id,
    clientOnly: true,
    reconnect: { enabled: false },
    ...options,
  } as IIpcClientOptions);
}

export interface IPair extends IStartedServer {
  client: IpcClient;
  /** Every client made through `addClient` (and the first one). */
  clients: IpcClient[];
  /** Connects one more client to the same server; it is closed by `close()`. */
  addClient(options?: TClientOverrides): Promise<IpcClient>;
  /** Disconnects every client, stops the server, removes the socket file. */
  close(): Promise<void>;
}

export interface IPairOptions {
  server?: TServerOverrides;
  client?: TClientOverrides;
  name?: string;
}

/**
 * A started server and one connected client on the given transport. Clients are client-only and
 * do not reconnect unless `client.reconnect` says so. Call `close()` (e.g. in `t.after`).
 */
export async function createPair(kind: TTransportKind, options: IPairOptions = {}): Promise<IPair> {
  const started = await startServer(kind, options.server, options.name);
  const clients: IpcClient[] = [];
  const addClient = async (clientOptions: TClientOverrides = {}) => {
    const client = makeClient(started, { ...options.client, ...clientOptions });
    clients.push(client);
    await client.connect();
    return client;
  };
  let client: IpcClient;
  try {
    client = await addClient();
  } catch (err) {
    await started.stop();
    throw err;
  }
  let closed = false;
  return {
    ...started,
    client,
    clients,
    addClient,
    close: async () => {
      if (closed) return;
      closed = true;
      await Promise.all(clients.map((c) => c.disconnect().catch(() => undefined)));
      await started.stop();
    },
  };
}

// ---- bounded waits ---------------------------------------------------------------------------

/** Rejects if `promise` does not settle within `ms` (so a hang fails the test instead of stalling it). */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what = 'operation'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits for one emission of `event` (its arguments), failing after `ms`. */
export function waitForEvent<T extends unknown[] = unknown[]>(emitter: EventEmitter<any>, event: string, ms = 5_000): Promise<T> {
  return withTimeout(
    new Promise<T>((resolve) => (emitter as EventEmitter).once(event, (...args: unknown[]) => resolve(args as T))),
    ms,
    `event "${event}"`,
  );
}

/** Polls `predicate` until true (every 10 ms), failing after `ms`. For state with no event to wait on. */
export async function waitUntil(predicate: () => boolean, ms = 5_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`${what} not reached within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Asserts that `promise` rejects with an IpcError of `code`, and returns that error. */
export async function expectIpcError(promise: Promise<unknown>, code: TIpcErrorCode, ms = 10_000): Promise<IpcError> {
  let error: unknown;
  try {
    await withTimeout(promise, ms, `promise expected to reject with ${code}`);
  } catch (err) {
    error = err;
  }
  assert.ok(error !== undefined, `expected a rejection with ${code}, but it resolved`);
  assert.ok(error instanceof IpcError, `expected an IpcError with ${code}, got ${String(error)}`);
  assert.equal((error as IpcError).code, code, `expected code ${code}, got ${(error as IpcError).code}: ${(error as IpcError).message}`);
  return error as IpcError;
}

// ---- raw sockets -----------------------------------------------------------------------------

/** Opens a plain socket (no smartipc) to an endpoint. */
export function rawConnect(endpoint: TClientEndpoint, ms = 5_000): Promise<net.Socket> {
  return withTimeout(
    new Promise<net.Socket>((resolve, reject) => {
      const socket = 'socketPath' in endpoint
        ? net.createConnection({ path: endpoint.socketPath })
        : net.createConnection({ host: endpoint.host, port: endpoint.port });
      socket.once('connect', () => {
        socket.removeListener('error', reject);
        resolve(socket);
      });
      socket.once('error', reject);
    }),
    ms,
    'raw connect',
  );
}

/** Resolves when a raw socket is closed by the other side (or errors). */
export function waitForClose(socket: net.Socket, ms = 5_000): Promise<void> {
  if (socket.destroyed && socket.closed) return Promise.resolve();
  return withTimeout(
    new Promise<void>((resolve) => {
      socket.on('error', () => undefined);
      socket.once('close', () => resolve());
    }),
    ms,
    'socket close',
  );
}

/** A HELLO frame as a client would send it; override any field to provoke a refusal. */
export function helloFrame(fields: Partial<IHelloPayload> & { serverId: string }): Buffer {
  const hello: IHelloPayload = {
    clientId: uniqueId('raw'),
    metadata: {},
    protocolVersion: defaults.PROTOCOL_VERSION,
    serialization: 'json',
    maxMessageSize: defaults.DEFAULT_MAX_MESSAGE_SIZE_BYTES,
    ...fields,
  };
  return encodeFrame({ kind: EFrameKind.Hello, encoding: EPayloadEncoding.Json, id: 0, type: '', payload: JSON.stringify(hello) });
}

/** Frames arriving on a raw socket, decoded with the library's own decoder (payloads copied). */
export function collectFrames(socket: net.Socket): IFrame[] {
  const frames: IFrame[] = [];
  const decoder = new FrameDecoder(Infinity, {
    onFrame: (frame) => frames.push({ ...frame, payload: Buffer.from(frame.payload) }),
    onFrameError: (error) => {
      throw error;
    },
  });
  socket.on('data', (chunk: Buffer) => decoder.push(chunk));
  return frames;
}

// ---- observing real connections -------------------------------------------------------------

export interface IConnectionWatch {
  /** Connections a listener of this process accepted on the endpoint (readiness probes included). */
  readonly accepted: number;
  /** The errno codes (ENOENT, ECONNREFUSED...) of dials from this process to the endpoint that failed, in order. */
  readonly failedDials: readonly string[];
  /** Stops watching. Safe to call twice. */
  dispose(): void;
}

type TSocketMessage = { socket: net.Socket & { server?: net.Server; errored?: (Error & { syscall?: string; address?: string; port?: number }) | null } };

/**
 * Observes real connections to an endpoint from this process through Node's built-in
 * diagnostics channels (`net.client.socket`, `net.server.socket`): nothing is mocked and no
 * listener is added that could change a socket's behaviour. Pass a function for an endpoint known
 * only later (a TCP server on port 0). A failed dial is counted when its socket closes.
 */
export function watchConnections(target: TClientEndpoint | (() => TClientEndpoint | undefined)): IConnectionWatch {
  const endpoint = () => (typeof target === 'function' ? target() : target);
  const isTarget = (address: string | undefined, port: number | undefined) => {
    const e = endpoint();
    if (!e) return false;
    return 'socketPath' in e ? address === e.socketPath : port === e.port;
  };
  let accepted = 0;
  const failedDials: string[] = [];
  const onServerSocket = (message: unknown) => {
    const address = (message as TSocketMessage).socket.server?.address();
    if (typeof address === 'string' ? isTarget(address, undefined) : address && isTarget(undefined, address.port)) accepted++;
  };
  const onClientSocket = (message: unknown) => {
    const socket = (message as TSocketMessage).socket;
    socket.once('close', () => {
      const error = socket.errored;
      if (error?.syscall === 'connect' && isTarget(error.address, error.port)) failedDials.push((error as NodeJS.ErrnoException).code ?? error.message);
    });
  };
  diagnosticsChannel.subscribe('net.server.socket', onServerSocket);
  diagnosticsChannel.subscribe('net.client.socket', onClientSocket);
  let disposed = false;
  return {
    get accepted() {
      return accepted;
    },
    failedDials,
    dispose: () => {
      if (disposed) return;
      disposed = true;
      diagnosticsChannel.unsubscribe('net.server.socket', onServerSocket);
      diagnosticsChannel.unsubscribe('net.client.socket', onClientSocket);
    },
  };
}

// ---- child processes -------------------------------------------------------------------------

export const HELPERS_DIR = path.dirname(fileURLToPath(import.meta.url));

export interface IChildServer {
  child: childProcess.ChildProcess;
  /** What the child sent as `{ ready: ... }` (by convention the server's address). */
  ready: unknown;
  /** SIGKILLs the child (if still running) and waits for it to exit. */
  kill(): Promise<void>;
}

/**
 * Runs `test/helpers/<script>` under tsx with `args` and waits for it to send `{ ready }` over the
 * IPC channel. Rejects (and kills the child) if it exits first or does not become ready in time.
 */
export async function spawnChildServer(script: string, args: string[], ms = 15_000): Promise<IChildServer> {
  const child = childProcess.fork(path.join(HELPERS_DIR, script), args, {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  try {
    const ready = await withTimeout(
      new Promise<unknown>((resolve, reject) => {
        child.on('message', (message) => {
          if (message && typeof message === 'object' && 'ready' in message) resolve((message as { ready: unknown }).ready);
        });
        child.once('exit', (code, signal) => reject(new Error(`${script} exited (${signal ?? code}) before it was ready`)));
      }),
      ms,
      `${script} ready`,
    );
    return { child, ready, kill };
  } catch (err) {
    await kill();
    throw err;
  }
}

/** For assert.throws / assert.rejects: an IpcError with code INVALID_ARGUMENT (a bad option or argument). */
export function isInvalidArgument(err: unknown): boolean {
  return err instanceof IpcError && err.code === 'INVALID_ARGUMENT';
}

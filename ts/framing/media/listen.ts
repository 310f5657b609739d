// Helpers the socket media share: binding, closing, probing, and naming dial failures.
import * as plugins from '../../plugins.js';
import { IpcError } from '../../smartipc.errors.js';
import { READINESS_PROBE_TIMEOUT_MS, SOCKET_PROBE_TIMEOUT_MS } from '../../smartipc.defaults.js';

/** Binds a node server, turning bind failures into IpcErrors that name the endpoint. */
export function bindServer(server: plugins.net.Server, listenOptions: plugins.net.ListenOptions, endpoint: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      server.removeListener('listening', onListening);
      if (err.code === 'EADDRINUSE') {
        reject(new IpcError('ADDRESS_IN_USE', `${endpoint} is already in use`, { cause: err }));
      } else {
        reject(new IpcError('SERVER_UNAVAILABLE', `cannot listen on ${endpoint}: ${err.code ?? err.message}`, { cause: err }));
      }
    };
    const onListening = () => {
      server.removeListener('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(listenOptions);
  });
}

/** Closes a node server without waiting for its connections (the owner closes those). */
export function closeServer(server: plugins.net.Server): Promise<void> {
  if (!server.listening) return Promise.resolve();
  // close()'s callback waits until every accepted connection has ended, and the owner closes
  // those only after this resolves: the listening handle itself is closed synchronously.
  server.close();
  return new Promise((resolve) => setImmediate(resolve));
}

/** A dial that failed at the socket level: SERVER_UNAVAILABLE naming the endpoint and the errno. */
export function dialFailed(err: unknown, description: string): IpcError {
  if (err instanceof IpcError) return err;
  const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  return new IpcError('SERVER_UNAVAILABLE', `no server at ${description} (${code})`, { cause: err });
}

/** Resolves with a socket once `connectEvent` fires; rejects with the raw error (the medium names it). */
export function dialSocket(socket: plugins.net.Socket, connectEvent = 'connect'): Promise<plugins.net.Socket> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      socket.removeListener(connectEvent, onConnect);
      socket.destroy();
      reject(err);
    };
    const onConnect = () => {
      socket.removeListener('error', onError);
      resolve(socket);
    };
    socket.once('error', onError);
    socket.once(connectEvent, onConnect);
  });
}

/** The readiness probe: a fresh connection is accepted, then dropped at once. */
export function acceptProbe(open: () => plugins.net.Socket, description: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = open();
    const timer = setTimeout(
      () => finish(new IpcError('TIMEOUT', `readiness probe of ${description} got no answer within ${READINESS_PROBE_TIMEOUT_MS} ms`)),
      READINESS_PROBE_TIMEOUT_MS,
    );
    timer.unref();
    const finish = (error?: Error) => {
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error instanceof IpcError ? error : new IpcError('SERVER_UNAVAILABLE', `readiness probe of ${description} failed: ${(error as NodeJS.ErrnoException).code ?? error.message}`, { cause: error }));
      else resolve();
    };
    socket.once('connect', () => finish());
    socket.once('error', finish);
  });
}

/**
 * Whether a live process answers on a socket path. Used before removing a socket file: only a
 * file nobody answers on (ECONNREFUSED) is stale.
 */
export function probeSocketPath(socketPath: string, timeoutMs = SOCKET_PROBE_TIMEOUT_MS): Promise<'live' | 'stale' | 'absent'> {
  return new Promise((resolve) => {
    const socket = plugins.net.createConnection({ path: socketPath });
    const timer = setTimeout(() => done('live'), timeoutMs);
    const done = (state: 'live' | 'stale' | 'absent') => {
      clearTimeout(timer);
      socket.destroy();
      resolve(state);
    };
    socket.once('connect', () => done('live'));
    socket.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') done('absent');
      else if (err.code === 'ECONNREFUSED') done('stale');
      else done('live');
    });
  });
}

/** A socket path nobody serves: the client may host it (see IMedium.canHost). */
export function isNoServerOnPath(err: unknown): boolean {
  const code = ((err as { cause?: NodeJS.ErrnoException })?.cause ?? (err as NodeJS.ErrnoException))?.code;
  return code === 'ENOENT' || code === 'ECONNREFUSED';
}

import * as plugins from '../plugins.js';
import { IpcError } from '../smartipc.errors.js';

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

/**
 * Whether a live process answers on a socket path. Used before removing a socket file: only a
 * file nobody answers on (ECONNREFUSED) is stale.
 */
export function probeSocketPath(socketPath: string, timeoutMs = 1_000): Promise<'live' | 'stale' | 'absent'> {
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

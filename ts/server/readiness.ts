import * as plugins from '../plugins.js';
import { IpcError } from '../smartipc.errors.js';
import type { TAddress } from '../interfaces/options.js';

const PROBE_TIMEOUT_MS = 2_000;

/** Proves that a fresh connection to a bound address is accepted, then drops it. */
export function connectProbe(address: TAddress, description: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = 'socketPath' in address
      ? plugins.net.createConnection({ path: address.socketPath })
      : plugins.net.createConnection({ host: loopbackFor(address.host), port: address.port });
    const timer = setTimeout(() => finish(new IpcError('TIMEOUT', `readiness probe of ${description} got no answer within ${PROBE_TIMEOUT_MS} ms`)), PROBE_TIMEOUT_MS);
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

function loopbackFor(host: string): string {
  if (host === '::' || host === '0.0.0.0' || host === '') return host === '::' ? '::1' : '127.0.0.1';
  return host;
}

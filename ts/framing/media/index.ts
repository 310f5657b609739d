// The media that serve endpoints, and the one place that picks a medium for an endpoint.
import { invalidArgument } from '../../smartipc.errors.js';
import type { TEndpoint } from '../../interfaces/options.js';
import type { IMedium, IMediumModule } from './medium.js';
import { unixMedium } from './unix.js';
import { pipeMedium } from './pipe.js';
import { tcpMedium } from './tcp.js';
import { tlsMedium } from './tls.js';

/** In the order they are asked; the first whose `matches` says yes serves the endpoint. */
const MEDIA: readonly IMediumModule[] = [pipeMedium, unixMedium, tlsMedium, tcpMedium];

export function mediumModuleFor(endpoint: Partial<TEndpoint>, platform: NodeJS.Platform = process.platform): IMediumModule {
  if (endpoint === null || typeof endpoint !== 'object') throw invalidArgument('options are required');
  const module = MEDIA.find((candidate) => candidate.matches(endpoint, platform));
  if (!module) throw invalidArgument('an endpoint needs socketPath (Unix socket / named pipe) or port (TCP)');
  return module;
}

/** The endpoint fields of `options`, validated by the medium that serves them. Throws INVALID_ARGUMENT. */
export function resolveEndpoint(options: Partial<TEndpoint>, platform?: NodeJS.Platform): TEndpoint {
  return mediumModuleFor(options, platform).resolve(options);
}

/** The endpoint for messages: its socket path, pipe name or tcp(s)://host:port. Never throws. */
export function describeEndpoint(endpoint: Partial<TEndpoint>, platform?: NodeJS.Platform): string {
  try {
    const module = mediumModuleFor(endpoint, platform);
    return module.describe(module.resolve(endpoint));
  } catch {
    return '(no endpoint)';
  }
}

export function createMedium(endpoint: TEndpoint, platform?: NodeJS.Platform): IMedium {
  return mediumModuleFor(endpoint, platform).create(endpoint);
}

export type { IMedium, IMediumModule, IMediumListener, IOpenedStream, IListenOptions } from './medium.js';
export { toPipePath } from './pipe.js';

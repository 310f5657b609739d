import * as plugins from './nats.plugins.js';

/** Debug output of the ./nats subpath, enabled with NODE_DEBUG=smartipc:nats. Never console output. */
export const debugNats = plugins.util.debuglog('smartipc:nats');

import * as plugins from './plugins.js';

/** Debug output, enabled with NODE_DEBUG=smartipc. Never console output from the library. */
export const debug = plugins.util.debuglog('smartipc');

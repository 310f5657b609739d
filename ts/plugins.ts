// Every import the library uses, in one place: node built-ins first, then @push.rocks.
import * as asyncHooks from 'node:async_hooks';
import * as crypto from 'node:crypto';
import * as events from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as stream from 'node:stream';
import * as tls from 'node:tls';
import * as util from 'node:util';
import * as v8 from 'node:v8';
import * as childProcess from 'node:child_process';
import * as diagnosticsChannel from 'node:diagnostics_channel';

export { asyncHooks, crypto, diagnosticsChannel, events, fs, net, os, path, stream, tls, util, v8, childProcess };

import * as smartrx from '@push.rocks/smartrx';

export { smartrx };

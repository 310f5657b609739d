// Every command, in the order --help lists them.
import type { ICommand } from '../cli.command.js';
import { call } from './call.js';
import { ping } from './ping.js';
import { publish } from './publish.js';
import { request } from './request.js';
import { send } from './send.js';
import { sendFile } from './sendfile.js';
import { services } from './services.js';
import { stats } from './stats.js';
import { subscribe } from './subscribe.js';

export const COMMANDS: readonly ICommand[] = [ping, request, send, call, publish, subscribe, services, stats, sendFile];

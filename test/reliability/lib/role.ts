// The child side of a role process: its configuration, the commands it answers, the events it
// reports, and the guarantees that it never outlives its parent or its time bound.
import type { IRoleCall, TRoleMessage } from './protocol.js';

export type TCommands = Record<string, (args: any) => unknown>;

export interface IRoleContext {
  /** Reports an event to the parent (a role is a process: timestamps use measure.now()). */
  emit(name: string, data?: unknown): void;
}

function post(message: TRoleMessage): void {
  if (process.send && process.connected) process.send(message);
}

/**
 * Runs a role: `setup` gets the configuration (argv[2], JSON) and returns the commands it answers
 * and what to report as ready. Exits when the parent goes, and after `hardTimeoutMs` (config).
 */
export function runRole<TConfig extends { hardTimeoutMs?: number }>(
  name: string,
  setup: (config: TConfig, context: IRoleContext) => Promise<{ commands: TCommands; ready?: unknown }>,
): void {
  const config = JSON.parse(process.argv[2] ?? '{}') as TConfig;
  const fatal = (err: unknown) => {
    const message = `${name} (pid ${process.pid}): ${(err as Error)?.stack ?? String(err)}`;
    process.stderr.write(`${message}\n`);
    post({ t: 'fatal', message });
    setTimeout(() => process.exit(1), 50);
  };
  process.on('uncaughtException', fatal);
  process.on('unhandledRejection', fatal);
  process.on('disconnect', () => process.exit(2));
  const hard = setTimeout(() => {
    process.stderr.write(`${name} (pid ${process.pid}) hit its hard timeout of ${config.hardTimeoutMs} ms\n`);
    process.exit(3);
  }, config.hardTimeoutMs ?? 120_000);
  hard.unref();
  const context: IRoleContext = { emit: (event, data) => post({ t: 'event', name: event, data }) };
  setup(config, context).then(
    ({ commands, ready }) => {
      process.on('message', (message: IRoleCall) => {
        if (message?.t !== 'call') return;
        const command = commands[message.cmd];
        if (!command) {
          post({ t: 'reply', id: message.id, ok: false, error: { message: `${name}: unknown command ${message.cmd}` } });
          return;
        }
        Promise.resolve()
          .then(() => command(message.args))
          .then(
            (result) => post({ t: 'reply', id: message.id, ok: true, result: result ?? null }),
            (err: { message?: string; code?: string }) =>
              post({ t: 'reply', id: message.id, ok: false, error: { message: String(err?.message ?? err), ...(err?.code ? { code: err.code } : {}) } }),
          );
      });
      post({ t: 'ready', data: ready ?? { pid: process.pid } });
    },
    (err) => fatal(err),
  );
}

// Baseline parent (S8 json, S9 advanced): Node's own child_process IPC (fork + process.send),
// requests correlated by hand the way an application would.
import * as path from 'node:path';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { config, main, markMemoryStart, onStop, ready, result } from '../lib/child.js';
import { runParent } from '../lib/forkdrivers.js';

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'forkchild.js');

main(async () => {
  const serialization = config.scenario === 'S9' ? 'advanced' : 'json';
  const child = fork(CHILD, [], { serialization, execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  onStop(async () => {
    child.kill();
  });
  const pending = new Map();
  let nextId = 0;
  child.on('message', (message) => {
    const entry = pending.get(message.id);
    if (entry === undefined) return;
    pending.delete(message.id);
    entry(message.data);
  });
  const call = (kind, data) =>
    new Promise((resolve, reject) => {
      const id = ++nextId;
      pending.set(id, resolve);
      child.send({ kind, id, data }, (err) => err && reject(err));
    });
  await call('echo', 'hello');
  const adapter = {
    send: (data) => new Promise((resolve, reject) => child.send({ kind: 'tick', data }, (err) => (err ? reject(err) : resolve()))),
    request: (data) => call('echo', data),
    received: () => call('count'),
  };
  markMemoryStart();
  await ready();
  await result(await runParent(adapter, config));
});

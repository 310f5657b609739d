// socketMode is in force from the moment the socket file exists: another process that lstat()s
// the path in a tight loop while the server starts (again and again) never sees another mode.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { SmartIpc } from '../ts/index.js';
import { uniqueId, uniqueSocketPath, waitUntil, withTimeout } from './helpers/fixtures.js';

/**
 * The watcher: lstat()s `path` as fast as it can until `path.stop` exists, counting the modes it
 * sees and how often the file appeared. It prints `+<mode>` when the file appears and `-` when it
 * goes (stdout to a pipe is synchronous on Linux), so the test can wait for it to see each start
 * from a moment when the file did not exist. Plain JavaScript, so nothing else runs in its loop.
 */
const WATCHER = `
const fs = require('node:fs');
const [path] = process.argv.slice(1);
const stop = path + '.stop';
const modes = {};
let samples = 0, present = 0, appearances = 0, was = false;
process.stdout.write('ready\\n');
for (let i = 0; ; i++) {
  if ((i & 1023) === 0 && fs.existsSync(stop)) break;
  const st = fs.lstatSync(path, { throwIfNoEntry: false });
  samples++;
  if (st) {
    present++;
    const mode = (st.mode & 0o777).toString(8);
    modes[mode] = (modes[mode] || 0) + 1;
    if (!was) {
      appearances++;
      process.stdout.write('+' + mode + '\\n');
    }
  } else if (was) {
    process.stdout.write('-\\n');
  }
  was = !!st;
}
process.stdout.write(JSON.stringify({ samples, present, appearances, modes }) + '\\n');
`;

interface IWatch {
  samples: number;
  present: number;
  appearances: number;
  modes: Record<string, number>;
}

async function watchWhileStarting(socketMode: number, starts: number): Promise<IWatch> {
  const socketPath = uniqueSocketPath('mode');
  const child = spawn(process.execPath, ['-e', WATCHER, socketPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => (out += chunk));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await waitUntil(() => out.startsWith('ready\n'), 10_000, 'the watcher to start');
    const seen = (sign: string) => out.split('\n').filter((line) => line.startsWith(sign)).length;
    for (let i = 0; i < starts; i++) {
      const server = SmartIpc.createServer({ id: uniqueId('mode'), socketPath, socketMode, heartbeat: false });
      await server.start();
      assert.equal(fs.statSync(socketPath).mode & 0o777, socketMode);
      await waitUntil(() => seen('+') === i + 1, 5_000, `the watcher to see start ${i + 1}`);
      await server.stop({ graceMs: 0 });
      await waitUntil(() => seen('-') === i + 1, 5_000, `the watcher to see stop ${i + 1}`);
    }
    fs.writeFileSync(`${socketPath}.stop`, '');
    await withTimeout(exited, 10_000, 'the watcher to finish');
    return JSON.parse(out.trim().split('\n').at(-1)!) as IWatch;
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    fs.rmSync(`${socketPath}.stop`, { force: true });
    fs.rmSync(socketPath, { force: true });
  }
}

describe('socketMode without a window', () => {
  for (const mode of [0o600, 0o660, 0o666]) {
    test(`socketMode 0o${mode.toString(8)}: a tight lstat loop in another process never sees another mode over 40 starts`, { timeout: 60_000 }, async (t) => {
      const previousUmask = process.umask();
      const watch = await watchWhileStarting(mode, 40);
      t.diagnostic(`0o${mode.toString(8)}: ${watch.samples} lstat calls, the file seen ${watch.present} times over ${watch.appearances} appearances; modes seen ${JSON.stringify(watch.modes)}`);
      assert.deepEqual(Object.keys(watch.modes), [mode.toString(8)]);
      assert.equal(watch.appearances, 40, 'the watcher saw every start from a moment when the file did not exist');
      assert.equal(process.umask(), previousUmask, 'the process umask is restored');
    });
  }
});

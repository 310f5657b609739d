// The CLI as a user gets it: the package is packed once (npm pack builds it), the tarball is
// installed into a throwaway app, and the tests run node_modules/.bin/smartipc like `npx smartipc`.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
const REPO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const STEP_TIMEOUT_MS = 150_000;

export interface IInstalledCli {
  /** node_modules/.bin/smartipc in the app. */
  bin: string;
  /** The file the bin links to, in the installed package. */
  binTarget: string;
  appDir: string;
  version: string;
  /** Removes the app and the tarball. */
  remove(): void;
}

export async function installPackedCli(): Promise<IInstalledCli> {
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'smartipc-cli-pack-'));
  try {
    const env = { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' };
    const { stdout } = await execFileAsync(NPM, ['pack', '--json', '--pack-destination', workDir], { cwd: REPO_DIR, env, timeout: STEP_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 });
    // prepack's build may print before npm's JSON.
    const packed = JSON.parse(stdout.slice(stdout.indexOf('['))) as Array<{ filename: string; version: string }>;
    const tarball = path.join(workDir, path.basename(packed[0].filename));
    const appDir = path.join(workDir, 'app');
    fs.mkdirSync(appDir);
    fs.writeFileSync(path.join(appDir, 'package.json'), JSON.stringify({ name: 'smartipc-cli-test-app', private: true, version: '0.0.0' }));
    await execFileAsync(NPM, ['install', '--no-audit', '--no-fund', '--no-save', tarball], { cwd: appDir, env, timeout: STEP_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 });
    const bin = path.join(appDir, 'node_modules', '.bin', process.platform === 'win32' ? 'smartipc.cmd' : 'smartipc');
    return {
      bin,
      binTarget: fs.realpathSync(bin),
      appDir,
      version: packed[0].version,
      remove: () => fs.rmSync(workDir, { recursive: true, force: true }),
    };
  } catch (err) {
    fs.rmSync(workDir, { recursive: true, force: true });
    throw err;
  }
}

// The package as it ships: what `npm pack` puts in the tarball is what users compile against.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const DIST = path.join(REPO, 'dist_ts');

function declarationFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return declarationFiles(full);
    return entry.name.endsWith('.d.ts') ? [full] : [];
  });
}

test('nothing marked @internal ships in the built .d.ts (tsconfig stripInternal)', () => {
  assert.ok(fs.existsSync(path.join(DIST, 'index.d.ts')), 'dist_ts/ is missing: run `npm run build` first (npm test does)');
  const leaks: string[] = [];
  for (const file of declarationFiles(DIST)) {
    fs.readFileSync(file, 'utf8').split('\n').forEach((line, i) => {
      if (line.includes('@internal')) leaks.push(`${path.relative(REPO, file)}:${i + 1}: ${line.trim()}`);
    });
  }
  assert.deepEqual(leaks, [], 'mark the declaration itself with /** @internal */ (first in its comment) so stripInternal removes it');
});

test('every path the package exports exists in the build', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { exports: Record<string, Record<string, string>> };
  for (const [subpath, conditions] of Object.entries(pkg.exports)) {
    for (const [condition, target] of Object.entries(conditions)) {
      assert.ok(fs.existsSync(path.join(REPO, target)), `exports["${subpath}"].${condition} -> ${target} is missing after the build`);
    }
  }
});

test('the packed package installs into a fresh app and loads from ESM and from CommonJS (require of an ES module, Node 20.19+)', { timeout: 180_000 }, async (t) => {
  const { execFileSync } = await import('node:child_process');
  const os = await import('node:os');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'smartipc-pack-'));
  t.after(() => fs.rmSync(work, { recursive: true, force: true }));
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const packed = execFileSync(npm, ['pack', '--silent', '--pack-destination', work], { cwd: REPO, encoding: 'utf8' }).trim().split('\n').pop()!;
  const app = path.join(work, 'app');
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
  execFileSync(npm, ['install', '--no-audit', '--no-fund', '--prefer-offline', '--silent', path.join(work, packed)], { cwd: app, stdio: 'pipe' });
  const script = (source: string) => source.replace(/\n\s+/g, '\n');
  fs.writeFileSync(
    path.join(app, 'check.cjs'),
    script(`const { SmartIpc, IpcError, IPC_ERROR_CODES } = require('@push.rocks/smartipc');
      if (typeof SmartIpc.createServer !== 'function' || !IPC_ERROR_CODES.includes('INVALID_ARGUMENT')) process.exit(2);
      try { SmartIpc.createServer({}); } catch (err) { if (!(err instanceof IpcError) || err.code !== 'INVALID_ARGUMENT') process.exit(3); }
      console.log('cjs ok');`),
  );
  fs.writeFileSync(
    path.join(app, 'check.mjs'),
    script(`import { SmartIpc, Observable } from '@push.rocks/smartipc';
      if (typeof SmartIpc.fork !== 'function' || typeof Observable !== 'function') process.exit(2);
      console.log('esm ok');`),
  );
  assert.equal(execFileSync(process.execPath, ['--no-warnings', 'check.cjs'], { cwd: app, encoding: 'utf8' }).trim(), 'cjs ok');
  assert.equal(execFileSync(process.execPath, ['check.mjs'], { cwd: app, encoding: 'utf8' }).trim(), 'esm ok');
  // The tarball holds the build and the docs a user reads, not the sources or the tests.
  const listed = execFileSync('tar', ['-tzf', path.join(work, packed)], { encoding: 'utf8' }).split('\n');
  assert.ok(listed.includes('package/dist_ts/index.js'));
  assert.ok(listed.includes('package/readme.md'));
  assert.ok(!listed.some((entry) => entry.startsWith('package/ts/') || entry.startsWith('package/test/')));
});

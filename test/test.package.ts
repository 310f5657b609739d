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

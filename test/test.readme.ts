// Keeps readme.md (and the hand-written docs/*.md) honest: every ```ts block is type-checked against
// the BUILT package, exactly as a user gets it, and every runnable block is run and must exit 0 by
// itself. Relative links must point to files and headings that exist.
//
// Info-string conventions (the words after ```ts on the opening fence; documented in docs/README.md,
// section "Code blocks on these pages"):
//
//   ```ts                   A complete program. Compiled, then run (tsx, cwd the temp app); it must
//                           exit with code 0 by itself within RUN_TIMEOUT_MS and leave no process
//                           behind.
//   ```ts fragment          A snippet. Compiled only, after a prelude that declares `server`
//                           (IpcServer), `client` (IpcClient), `channel` (what createChannel
//                           returns) and `clientId` (string), unless the snippet declares them
//                           itself. No names are imported for it: a fragment imports what it uses.
//                           Top-level await is allowed.
//   ```ts file=NAME.ts      A program saved as NAME.ts in the app dir, so that another block can
//                           import or spawn it (`new URL('./NAME.ts', import.meta.url)`). Compiled;
//                           not run by itself unless the info string also says `run`
//                           (```ts file=client.ts run). Unnamed blocks are saved as readme-L<line>.ts
//                           (docs/design.md: docs-design-L<line>.ts). Names are shared by all pages.
//   ```ts todo="reason"     Written for the contract in ../shared/API.md, waiting for the library.
//                           Compiled and run like any other block (combines with the words above),
//                           but reported as a node:test TODO: its failures are printed, never fail
//                           the test. Remove the mark once the library provides what it needs.
//
// README_TEST_VERBOSE=1 prints every run block's output.
//
// Other fences (sh, text, json...) are not checked. All blocks are compiled by one `tsc --noEmit`
// (strict, skipLibCheck false, module NodeNext) in a temp app dir under os.tmpdir() whose
// node_modules/@push.rocks/smartipc is a symlink to this repository, so package.json "exports" and
// dist_ts/*.d.ts are what resolves. Only @types/node is linked in beside it: an example that imports a
// package the user would not have installed fails here as it would for them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as childProcess from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const README = path.join(REPO, 'readme.md');
const TSC = path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');
const TSX_LOADER = new URL('./node_modules/tsx/dist/loader.mjs', `file://${REPO}/`).href;
const COMPILE_TIMEOUT_MS = 60_000;
const RUN_TIMEOUT_MS = 20_000;
const OUTPUT_TAIL_LINES = 40;

export interface IReadmeBlock {
  /** The page it is in, relative to the repo: readme.md or docs/NAME.md. */
  page: string;
  /** 1-based line of the opening fence in that page. */
  line: number;
  info: string;
  code: string;
  fragment: boolean;
  /** The file name the block is saved under in the temp app. */
  file: string;
  run: boolean;
  todo?: string;
}

/** Parses the info string's words: bare words and key=value (value optionally "quoted"). */
function parseInfo(info: string): Map<string, string | true> {
  const words = new Map<string, string | true>();
  for (const match of info.matchAll(/(\w+)(?:=(?:"([^"]*)"|(\S+)))?/g)) {
    words.set(match[1]!, match[2] ?? match[3] ?? true);
  }
  return words;
}

export function extractTsBlocks(markdown: string, page = 'readme.md'): IReadmeBlock[] {
  const lines = markdown.split('\n');
  const blocks: IReadmeBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(`{3,}|~{3,})\s*(\S*)\s*(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const fence = open[1]!;
    const end = lines.findIndex((l, j) => j > i && l.startsWith(fence) && l.trim() === fence);
    if (end === -1) throw new Error(`${page}:${i + 1}: a code fence that is never closed`);
    if (open[2] === 'ts' || open[2] === 'typescript') {
      const words = parseInfo(open[3]!);
      const line = i + 1;
      const named = words.get('file');
      if (named !== undefined && (named === true || !/^[\w.-]+\.ts$/.test(named))) {
        throw new Error(`${page}:${line}: file= needs a plain file name ending in .ts, got ${String(named)}`);
      }
      const fragment = words.has('fragment');
      const todo = words.get('todo');
      const stem = page === 'readme.md' ? 'readme' : page.replace(/\.md$/, '').replace(/[^\w]+/g, '-');
      blocks.push({
        page,
        line,
        info: open[3]!.trim(),
        code: lines.slice(i + 1, end).join('\n') + '\n',
        fragment,
        file: typeof named === 'string' ? named : `${stem}-L${line}${fragment ? '.fragment' : ''}.ts`,
        run: !fragment && (named === undefined || words.has('run')),
        todo: todo === undefined ? undefined : todo === true ? 'waits for the library' : todo,
      });
    }
    i = end;
  }
  return blocks;
}

const PRELUDE_NAMES: Record<string, string> = {
  server: "import('@push.rocks/smartipc').IpcServer",
  client: "import('@push.rocks/smartipc').IpcClient",
  channel: "ReturnType<typeof import('@push.rocks/smartipc').SmartIpc.createChannel>",
  clientId: 'string',
};

/** The prelude of a fragment: one line, so a diagnostic's line maps to the readme by a fixed offset. */
function preludeFor(code: string): string {
  const declared = (name: string) =>
    new RegExp(`\\b(?:const|let|var)\\s+[^=;]*\\b${name}\\b|\\b(?:function|class)\\s+${name}\\b|\\bimport\\b[^;]*\\b${name}\\b`).test(code);
  const declarations = Object.entries(PRELUDE_NAMES)
    .filter(([name]) => !declared(name))
    .map(([name, type]) => `declare const ${name}: ${type};`);
  return `export {}; ${declarations.join(' ')}\n`;
}

/** The text of a block as it is written to the app dir, and how many lines come before its code. */
function sourceOf(block: IReadmeBlock): { text: string; offset: number } {
  return block.fragment ? { text: preludeFor(block.code) + block.code, offset: 1 } : { text: block.code, offset: 0 };
}

interface ITempApp {
  dir: string;
  cleanup(): void;
}

function makeTempApp(blocks: IReadmeBlock[]): ITempApp {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smartipc-readme-'));
  const modules = path.join(dir, 'node_modules');
  fs.mkdirSync(path.join(modules, '@push.rocks'), { recursive: true });
  fs.mkdirSync(path.join(modules, '@types'), { recursive: true });
  fs.symlinkSync(REPO, path.join(modules, '@push.rocks', 'smartipc'), 'dir');
  fs.symlinkSync(path.join(REPO, 'node_modules', '@types', 'node'), path.join(modules, '@types', 'node'), 'dir');
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'readme-app', private: true, type: 'module' }, null, 2));
  fs.writeFileSync(
    path.join(dir, 'tsconfig.json'),
    JSON.stringify(
      {
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          lib: ['ES2022'],
          types: ['node'],
          strict: true,
          skipLibCheck: false,
          noEmit: true,
          allowImportingTsExtensions: true,
        },
        include: ['*.ts'],
      },
      null,
      2,
    ),
  );
  const seen = new Map<string, string>();
  for (const block of blocks) {
    const earlier = seen.get(block.file);
    if (earlier !== undefined) throw new Error(`${block.page}:${block.line}: file=${block.file} is already used by the block at ${earlier}`);
    seen.set(block.file, `${block.page}:${block.line}`);
    fs.writeFileSync(path.join(dir, block.file), sourceOf(block).text);
  }
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

interface IDiagnostic {
  file: string;
  line: number;
  text: string;
}

/** One tsc run over every block; diagnostics grouped by the file they are in. */
function typeCheck(app: ITempApp): { diagnostics: IDiagnostic[]; raw: string; status: number | null } {
  const result = childProcess.spawnSync(process.execPath, [TSC, '-p', app.dir, '--pretty', 'false'], {
    cwd: app.dir,
    encoding: 'utf8',
    timeout: COMPILE_TIMEOUT_MS,
    killSignal: 'SIGKILL',
  });
  const raw = `${result.stdout ?? ''}${result.stderr ?? ''}`;
  const diagnostics: IDiagnostic[] = [];
  for (const line of raw.split('\n')) {
    const match = /^(.+?)\((\d+),(\d+)\): (?:error|warning) (TS\d+: .*)$/.exec(line);
    if (match) diagnostics.push({ file: path.basename(match[1]!), line: Number(match[2]), text: `${match[4]}` });
    else if (line.startsWith(' ') && diagnostics.length > 0) diagnostics[diagnostics.length - 1]!.text += `\n${line}`;
  }
  return { diagnostics, raw, status: result.status };
}

function describeDiagnostic(block: IReadmeBlock, diagnostic: IDiagnostic): string {
  const readmeLine = block.line + diagnostic.line - sourceOf(block).offset;
  return `${block.page}:${readmeLine} (block at line ${block.line}): ${diagnostic.text}`;
}

function tail(text: string, lines = OUTPUT_TAIL_LINES): string {
  const all = text.trimEnd().split('\n');
  return (all.length > lines ? ['...', ...all.slice(-lines)] : all).join('\n');
}

/**
 * Live (non-zombie) processes in a process group. Linux: read from /proc (a zombie, e.g. tsx's
 * esbuild service right after node exited, is not a leftover). Elsewhere: whether the group exists.
 */
function liveGroupMembers(pgid: number): string[] {
  if (process.platform !== 'linux') {
    try {
      process.kill(-pgid, 0);
      return [`process group ${pgid}`];
    } catch {
      return [];
    }
  }
  const members: string[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    // pid (comm) state ppid pgrp ...: comm may contain spaces and parentheses, so split after the last ')'.
    const close = stat.lastIndexOf(')');
    const [state, , pgrp] = stat.slice(close + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z') members.push(`${entry} ${stat.slice(stat.indexOf('(') + 1, close)}`);
  }
  return members;
}

/** Process groups of blocks still running: ended if this test process exits first (e.g. a test timeout). */
const liveGroups = new Set<number>();
process.on('exit', () => {
  for (const pgid of liveGroups) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
});

/** Runs one block with tsx, in its own process group so that whatever it spawns can be ended too. */
async function runBlock(app: ITempApp, block: IReadmeBlock): Promise<{ code: number | null; signal: string | null; output: string; timedOut: boolean; leftovers?: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.NODE_OPTIONS;
  delete env.SMARTIPC_CLIENT_ONLY;
  delete env.NODE_TEST_CONTEXT;
  const child = childProcess.spawn(process.execPath, ['--import', TSX_LOADER, path.join(app.dir, block.file)], {
    cwd: app.dir,
    env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  liveGroups.add(child.pid!);
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }, RUN_TIMEOUT_MS);
  const [code, signal] = await new Promise<[number | null, string | null]>((resolve) => child.once('close', (c, s) => resolve([c, s])));
  clearTimeout(timer);
  // A process still alive in the block's process group: the example left something running.
  let members = liveGroupMembers(child.pid!);
  for (let i = 0; i < 60 && members.length > 0; i++) {
    await new Promise((r) => setTimeout(r, 50));
    members = liveGroupMembers(child.pid!);
  }
  const leftovers = members.length > 0 ? members.join(', ') : undefined;
  if (leftovers) {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      /* gone meanwhile */
    }
  }
  liveGroups.delete(child.pid!);
  return { code, signal, output, timedOut, leftovers };
}

const DOCS = path.join(REPO, 'docs');
/** readme.md and the hand-written pages of docs/ (not the generated docs/api/). */
const PAGES = [README, ...(fs.existsSync(DOCS) ? fs.readdirSync(DOCS).filter((f) => f.endsWith('.md')).sort().map((f) => path.join(DOCS, f)) : [])];
const markdown = fs.readFileSync(README, 'utf8');
const blocks = PAGES.flatMap((page) => extractTsBlocks(fs.readFileSync(page, 'utf8'), path.relative(REPO, page)));

test('readme.md starts with the two set-up commands: the demo (npm start) and the tests (npm test)', () => {
  const lines = markdown.split('\n');
  const firstFence = lines.findIndex((l) => l.startsWith('```'));
  assert.ok(firstFence !== -1 && firstFence < 20, 'the first code block should come within the first 20 lines');
  assert.match(lines[firstFence]!, /^```(sh|bash|shell)\s*$/, 'the first code block should be shell commands');
  const close = lines.findIndex((l, i) => i > firstFence && l.startsWith('```'));
  const commands = lines.slice(firstFence + 1, close).map((l) => l.replace(/#.*$/, '').trim()).filter(Boolean);
  assert.ok(commands.length >= 2, 'two set-up commands');
  assert.match(commands[0]!, /\bnpm start\b/, 'the first command runs the demo (npm start)');
  assert.match(commands[1]!, /\bnpm test\b/, 'the second command runs the tests (npm test)');
  const before = lines.slice(0, firstFence).filter((l) => l.startsWith('## '));
  assert.ok(before.length <= 1, `only the set-up heading may come before the set-up commands, found: ${before.join(', ')}`);
});

test('readme.md has ts blocks, and every block is a program, a fragment or a named file', () => {
  assert.ok(blocks.length > 0, 'no ```ts block found');
  assert.ok(blocks.some((b) => b.run), 'no runnable block');
  for (const block of blocks) {
    const words = parseInfo(block.info);
    for (const word of words.keys()) {
      assert.ok(['fragment', 'file', 'run', 'todo'].includes(word), `${block.page}:${block.line}: unknown info-string word "${word}"`);
    }
  }
});

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  let inFence = false;
  for (const line of markdown.split('\n')) {
    if (/^(`{3,}|~{3,})/.test(line)) inFence = !inFence;
    const heading = inFence ? null : /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!heading) continue;
    const base = heading[1]!.replace(/`/g, '').toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
    let anchor = base;
    for (let n = 1; anchors.has(anchor); n++) anchor = `${base}-${n}`;
    anchors.add(anchor);
  }
  return anchors;
}

test('relative links in readme.md and docs/*.md point to files and headings that exist', () => {
  const broken: string[] = [];
  for (const page of PAGES) {
    const text = fs.readFileSync(page, 'utf8');
    const withoutCode = text.replace(/^(`{3,}|~{3,})[^\n]*\n[\s\S]*?^\1\s*$/gm, '').replace(/`[^`\n]*`/g, '');
    for (const match of withoutCode.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = match[1]!;
      if (/^[a-z]+:/i.test(target)) continue; // https:, mailto:
      const [file, anchor] = target.split('#') as [string, string | undefined];
      const resolved = file === '' ? page : path.resolve(path.dirname(page), file);
      const where = `${path.relative(REPO, page)}: (${target})`;
      if (!fs.existsSync(resolved)) {
        broken.push(`${where}: no such file`);
        continue;
      }
      if (anchor && resolved.endsWith('.md') && !anchorsOf(fs.readFileSync(resolved, 'utf8')).has(anchor)) {
        broken.push(`${where}: no heading with the anchor #${anchor}`);
      }
    }
  }
  assert.deepEqual(broken, []);
});

test('readme.md and docs/*.md ts blocks compile under strict against the built package, and the runnable ones run and exit 0', { timeout: COMPILE_TIMEOUT_MS + blocks.length * (RUN_TIMEOUT_MS + 5_000) }, async (t) => {
  assert.ok(fs.existsSync(path.join(REPO, 'dist_ts', 'index.d.ts')), 'dist_ts/ is missing: run `npm run build` first (npm test does)');
  const app = makeTempApp(blocks);
  t.after(() => app.cleanup());

  const checked = typeCheck(app);
  const byFile = new Map(blocks.map((b) => [b.file, b]));
  const stray = checked.diagnostics.filter((d) => !byFile.has(d.file));
  if (checked.status !== 0 && checked.diagnostics.length === 0) assert.fail(`tsc failed without diagnostics:\n${tail(checked.raw)}`);
  assert.equal(stray.length, 0, `tsc reported errors outside the blocks:\n${stray.map((d) => `${d.file}:${d.line}: ${d.text}`).join('\n')}`);

  for (const block of blocks) {
    const diagnostics = checked.diagnostics.filter((d) => d.file === block.file);
    const name = `${block.page}:${block.line} \`\`\`ts ${block.info}`.trimEnd();
    await t.test(name, { todo: block.todo }, async (b) => {
      assert.equal(diagnostics.length, 0, `does not compile:\n${diagnostics.map((d) => describeDiagnostic(block, d)).join('\n')}`);
      if (!block.run) {
        b.diagnostic(block.fragment ? 'fragment: compiled only' : `${block.file}: compiled; run by another block`);
        return;
      }
      const result = await runBlock(app, block);
      if (process.env.README_TEST_VERBOSE) b.diagnostic(`output:\n${tail(result.output)}`);
      const how = result.timedOut ? `did not exit within ${RUN_TIMEOUT_MS} ms (killed)` : `exited with code ${result.code}${result.signal ? ` (signal ${result.signal})` : ''}`;
      assert.ok(
        !result.timedOut && result.code === 0,
        `the block at ${block.page}:${block.line} ${how}; output tail:\n${tail(result.output) || '(no output)'}`,
      );
      assert.ok(!result.leftovers, `the block at ${block.page}:${block.line} exited but left processes running (${result.leftovers}; killed now); output tail:\n${tail(result.output)}`);
    });
  }
});

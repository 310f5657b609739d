#!/usr/bin/env node
// Summarises a V8 .cpuprofile (node --cpu-prof): the functions with the most self time, and their
// inclusive time. Usage: node bench/tools/cpuprofile-summary.js <file.cpuprofile> [--top 25] [--filter text]
import * as fs from 'node:fs';
import * as path from 'node:path';

const args = process.argv.slice(2);
const files = [];
let top = 25;
let filter;
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--top') top = Number(args[++i]);
  else if (args[i] === '--filter') filter = args[++i];
  else files.push(args[i]);
}
if (files.length === 0) {
  console.error('usage: node bench/tools/cpuprofile-summary.js <file.cpuprofile>... [--top 25] [--filter text]');
  process.exit(2);
}

for (const file of files) summarise(file);

function summarise(file) {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8'));
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parentOf = new Map();
  for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);

  // Self time per node from the sample timeline (more exact than hitCount x interval).
  const selfUs = new Map();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i];
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i + 1] ?? 0));
  }
  const totalUs = [...selfUs.values()].reduce((a, b) => a + b, 0);

  const keyOf = (node) => {
    const f = node.callFrame;
    const name = f.functionName || '(anonymous)';
    const where = f.url ? `${shorten(f.url)}:${f.lineNumber + 1}` : '';
    return where ? `${name} ${where}` : name;
  };
  const self = new Map();
  const inclusive = new Map();
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    const key = keyOf(node);
    self.set(key, (self.get(key) ?? 0) + us);
    // Walk up once per distinct function on the stack, so recursion is not counted twice.
    const seen = new Set();
    for (let cur = id; cur !== undefined; cur = parentOf.get(cur)) {
      const k = keyOf(byId.get(cur));
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + us);
    }
  }

  const idleKeys = ['(idle)', '(program)', '(garbage collector)'];
  const pct = (us) => `${((us / totalUs) * 100).toFixed(1).padStart(5)}%`;
  console.log(`\n${path.basename(file)}: ${(totalUs / 1000).toFixed(0)} ms sampled`);
  for (const k of idleKeys) if (self.has(k)) console.log(`  ${k.padEnd(22)} ${pct(self.get(k))}`);
  console.log('  self%   incl%   function');
  const rows = [...self.entries()]
    .filter(([k]) => !idleKeys.includes(k))
    .filter(([k]) => !filter || k.includes(filter))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top);
  for (const [k, us] of rows) console.log(`  ${pct(us)}  ${pct(inclusive.get(k) ?? 0)}  ${k}`);
}

function shorten(url) {
  const marker = url.indexOf('/dist_ts/');
  if (marker >= 0) return url.slice(marker + 1);
  const bench = url.indexOf('/bench/');
  if (bench >= 0) return url.slice(bench + 1);
  return url.replace(/^node:/, 'node:');
}

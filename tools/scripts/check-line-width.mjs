#!/usr/bin/env node
// Fails when a hand-written source line is wider than the printWidth that .prettierrc.json
// declares. Prettier wraps code but leaves long strings and comments alone, so this is the rule
// that holds the width for those too. Generated code (src/gen, the Python stubs) is exempt.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const width = JSON.parse(readFileSync('.prettierrc.json', 'utf8')).printWidth;
// .proto files are buf format's to lay out.
const patterns = ['*.ts', '*.js', '*.mjs', '*.cjs', '*.py', '*.sh', 'Dockerfile'];
const generated = /(^|\/)gen\//;

const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '--', ...patterns], {
  encoding: 'utf8',
})
  .split('\n')
  .filter((file) => file !== '' && !generated.test(file));

const offenders = [];
for (const file of files) {
  let text;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    continue; // listed by git but deleted in the working tree
  }
  text.split('\n').forEach((line, index) => {
    if ([...line].length > width) offenders.push(`${file}:${index + 1}: ${[...line].length} characters`);
  });
}

if (offenders.length > 0) {
  process.stderr.write(`${offenders.join('\n')}\n${offenders.length} line(s) wider than ${width} characters\n`);
  process.exit(1);
}
process.stdout.write(`${files.length} files, no line wider than ${width} characters\n`);

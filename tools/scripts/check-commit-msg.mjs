#!/usr/bin/env node
// Checks a commit message against the house style (CONTRIBUTING.md): a subject of at most 72
// characters, `scope: imperative summary`, no trailing period, and a blank line before any body.
// Used by the commit-msg hook with the message file; `--self-test` checks the rules themselves.
import { readFileSync } from 'node:fs';

const MAX_SUBJECT = 72;
// A scope is a project or area name (`inference`, `model-registry`, `ci`), several joined by commas.
const SUBJECT = /^[a-z0-9][a-z0-9._/-]*(, ?[a-z0-9][a-z0-9._/-]*)*: \S/;
// Messages git writes itself are let through as they are.
const GENERATED = /^(Merge |Revert "|fixup! |squash! |amend! )/;

/** The problems of one message (empty when it passes). */
export function problems(message) {
  const lines = message
    .split('\n')
    .filter((line) => !line.startsWith('#'))
    .map((line) => line.trimEnd());
  while (lines.length > 0 && lines[0] === '') lines.shift();
  const subject = lines[0] ?? '';
  if (subject === '') return ['the message is empty'];
  if (GENERATED.test(subject)) return [];
  const found = [];
  if ([...subject].length > MAX_SUBJECT) {
    found.push(`the subject is ${[...subject].length} characters; at most ${MAX_SUBJECT}`);
  }
  if (!SUBJECT.test(subject)) {
    found.push('the subject must read "scope: what the change does", e.g. "inference: split the instance pool"');
  }
  if (subject.endsWith('.')) found.push('the subject ends with a period');
  if (lines.length > 1 && lines[1] !== '') found.push('a blank line must separate the subject from the body');
  return found;
}

function selfTest() {
  const cases = [
    ['inference: split the instance pool\n\nWhy it was done.\n', true],
    ['model-registry, cli: store blobs in S3\n', true],
    ['Merge branch "x"\n', true],
    ['Fix stuff\n', false],
    ['inference: split the instance pool.\n', false],
    [`inference: ${'x'.repeat(70)}\n`, false],
    ['inference: split\nno blank line\n', false],
    ['\n\n', false],
  ];
  const failed = cases.filter(([message, ok]) => (problems(message).length === 0) !== ok);
  for (const [message, ok] of failed)
    process.stderr.write(`self-test: ${JSON.stringify(message)} should ${ok ? '' : 'not '}pass\n`);
  if (failed.length > 0) process.exit(1);
  process.stdout.write(`commit message rules: ${cases.length} cases pass\n`);
}

if (process.argv[2] === '--self-test') {
  selfTest();
} else if (process.argv[2] !== undefined) {
  const found = problems(readFileSync(process.argv[2], 'utf8'));
  if (found.length > 0) {
    process.stderr.write(`commit message refused (see CONTRIBUTING.md):\n${found.map((p) => `  - ${p}`).join('\n')}\n`);
    process.exit(1);
  }
} else {
  process.stderr.write('usage: check-commit-msg.mjs MESSAGE_FILE | --self-test\n');
  process.exit(2);
}

#!/usr/bin/env bash
# `npm test`: contract checks, codegen freshness, formatting and layout rules, lint, typecheck, then every
# project's tests.
set -euo pipefail
cd "$(dirname "$0")/../.."
export NX_DAEMON=false NX_NO_CLOUD=true NX_TUI=false
buf=node_modules/.bin/buf

echo "== contracts: buf lint, buf format"
$buf lint
$buf format --diff --exit-code
if git rev-parse -q --verify HEAD~1 >/dev/null 2>&1 && git cat-file -e HEAD~1:buf.yaml 2>/dev/null; then
  echo "== contracts: buf breaking against the previous commit"
  $buf breaking --against '.git#ref=HEAD~1'
fi

echo "== contracts: generated code is fresh"
node tools/scripts/generate-contracts.mjs --check
clients/python/generate.sh --check

echo "== format: prettier --check, line width, layout, commit rules"
npx prettier --check --log-level warn .
node tools/scripts/check-line-width.mjs
stray=$(git ls-files --cached --others --exclude-standard -- '*.ts' |
  grep -E '(^|/)test-[^/]*\.ts$' | grep -v '/testing/' || true)
if [ -n "$stray" ]; then
  echo "test scaffolding belongs in a src/testing/ folder:" >&2
  echo "$stray" >&2
  exit 1
fi
node tools/scripts/check-commit-msg.mjs --self-test

echo "== lint"
npx nx run-many -t lint --output-style=stream

echo "== typecheck"
npx tsc -p tsconfig.json

echo "== tests"
rm -rf .test-results
npx nx run-many -t test --output-style=stream --skip-nx-cache
node tools/scripts/test-summary.mjs

#!/usr/bin/env bash
# Adds the standard build config to a lib/service/tool folder: tsconfig.build.json (emits dist/,
# resolving sibling libs through their built .d.ts, not their sources) and the build/test scripts.
set -euo pipefail
dir=$1
cat > "$dir/tsconfig.build.json" <<'JSON'
{
  "extends": "../../tsconfig.base.json",
  "compilerOptions": {
    "customConditions": [], "rootDir": "src", "outDir": "dist", "tsBuildInfoFile": "dist/.tsbuildinfo"
  },
  "include": ["src/**/*.ts"],
  "exclude": ["src/**/*.test.ts", "src/**/test-*.ts"]
}
JSON
node -e '
const fs = require("fs"); const p = process.argv[1] + "/package.json";
const pkg = JSON.parse(fs.readFileSync(p, "utf8"));
pkg.scripts = {
  build: "tsc -p tsconfig.build.json",
  test: "vitest run --config ../../vitest.config.ts",
  lint: "eslint . --max-warnings 0",
  ...(pkg.scripts || {}),
};
fs.writeFileSync(p, JSON.stringify(pkg, null, 2) + "\n");' "$dir"

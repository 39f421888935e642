#!/usr/bin/env bash
# Regenerates the TypeScript client's types from the readiness service's answer (StatusView):
# the JSON Schema first (written by the Rust test that checks it), then status.ts from the schema.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DIALTONE_WRITE_SCHEMA=1 cargo test --quiet -p dialtone-readiness --lib committed_schema_matches >/dev/null
npm run --silent gen:types
echo "wrote packages/client/src/status.schema.json and packages/client/src/status.ts"

#!/bin/bash
# ava under Windows node.exe in Wine (build-node.sh first): test-node.sh [dist/__test__/x.spec.js ...]
set -u
cd "$(dirname "$0")/../.."
exec scripts/wine/run-node.sh node_modules/ava/entrypoints/cli.mjs "$@"

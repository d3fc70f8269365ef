#!/usr/bin/env bash
# Set up (if needed) and run the main job on the embedded default. Until the demo model ships
# (issue 5), that is: write a tiny random-weight checkpoint with the official key layout and inspect it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=build/demo
mkdir -p "$out"
.venv/bin/smop-edge init tiny-jejr --out "$out/tiny-jejr.pth" --tokenizer-out "$out/tokenizer.json"
exec .venv/bin/smop-edge inspect "$out/tiny-jejr.pth" --tokenizer "$out/tokenizer.json"

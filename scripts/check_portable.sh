#!/usr/bin/env bash
# The runtime on a Python and numpy other than the development environment's: installs the toolkit *without*
# extras (no torch, no mediapipe) plus pytest and scikit-image into a fresh venv, takes the face models out of
# the mediapipe wheel (`python -m smop_edge.runtime.face_mesh`), and runs the runtime's tests. Tests that need
# a checkpoint (torch) skip.
#
#   bash scripts/check_portable.sh host     # this machine's python3 (3.11) with the newest numpy (2.x)
#   bash scripts/check_portable.sh trixie   # Debian 13's Python 3.13 + numpy 2, in a chroot made by debootstrap
#
# trixie needs root (debootstrap, chroot, mounts) and the Debian mirror; the rootfs stays in build/portable/
# and is reused. The work tree's tracked files (uncommitted changes included) are what is tested.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-trixie}"
TESTS="tests/test_decoding.py tests/test_media.py tests/test_lip_cropper.py tests/test_tokenizer.py
       tests/test_torch_free.py tests/test_vad.py tests/test_manifest.py tests/test_stream.py tests/test_transcribe.py
       tests/test_live.py tests/test_eval.py tests/test_exit_codes.py tests/test_fuzz.py"
root=build/portable
mkdir -p $root

check() {  # $1: python, $2: a folder for the venv and the source copy (as the python sees it), $3: run prefix
    local py="$1" dir="$2"; shift 2
    "$@" bash -c "set -e; rm -rf $dir/src $dir/venv; mkdir -p $dir/src"
    git ls-files -z | tar -c --null -T - | "$@" tar -x -C "$dir/src"
    "$@" bash -c "set -e; $py -m venv $dir/venv; cd $dir/src
        $dir/venv/bin/python -m pip install -q --upgrade pip
        $dir/venv/bin/python -m pip install -q . pytest scikit-image
        $dir/venv/bin/python -m smop_edge.runtime.face_mesh
        $dir/venv/bin/python -c 'import sys, numpy, cv2, onnxruntime, openvino; print(\"python\", sys.version.split()[0], \"numpy\", numpy.__version__, \"opencv\", cv2.__version__, \"onnxruntime\", onnxruntime.__version__, \"openvino\", openvino.__version__)'
        $dir/venv/bin/python -m pytest -q -p no:cacheprovider $(echo $TESTS)"
}

case "$mode" in
  host)
    check python3 "$PWD/$root/host" env ;;
  trixie)
    rootfs=$root/trixie-amd64
    if [ ! -x $rootfs/usr/bin/python3 ]; then
        command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; }
        debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates trixie $rootfs \
            http://deb.debian.org/debian
    fi
    cp /etc/resolv.conf $rootfs/etc/resolv.conf
    cp /etc/ssl/certs/ca-certificates.crt $rootfs/etc/ssl/certs/ca-certificates.crt  # the host's trust (proxies)
    [ -f /etc/pip.conf ] && cp /etc/pip.conf $rootfs/etc/pip.conf
    mountpoint -q $rootfs/proc || mount -t proc proc $rootfs/proc
    mountpoint -q $rootfs/sys || mount --bind /sys $rootfs/sys  # OpenVINO reads the CPU topology there
    trap 'umount $rootfs/proc $rootfs/sys' EXIT
    check python3 /check chroot $rootfs ;;
  *)
    echo "usage: $0 host|trixie" >&2; exit 2 ;;
esac

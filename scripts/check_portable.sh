#!/usr/bin/env bash
# The runtime on a Python and numpy other than the development environment's: installs the toolkit *without*
# extras (no torch, no mediapipe) plus pytest and scikit-image into a fresh venv, takes the face models out of
# the mediapipe wheel (`python -m smop_edge.runtime.face_mesh`), and runs the runtime's tests. Tests that need
# a checkpoint (torch) skip.
#
#   bash scripts/check_portable.sh host        # this machine's python3 (3.11) with the newest numpy (2.x)
#   bash scripts/check_portable.sh host-numpy1 # the same with numpy 1.x (what pip picks under numpy<2)
#   bash scripts/check_portable.sh trixie      # Debian 13's Python 3.13 + numpy 2, in a chroot made by debootstrap
#   bash scripts/check_portable.sh pi-trixie   # the Pi install script (scripts/pi/install.sh) in a fresh Debian
#   bash scripts/check_portable.sh pi-bookworm #   13 / 12 chroot, then `smop-edge pi` on a sample and the unit file
#
# The chroots need root (debootstrap, chroot, mounts) and the Debian mirror; they stay in build/portable/ and are
# reused (the pi-* modes start from a fresh copy each time). The work tree's tracked files (uncommitted changes
# included) are what is tested. The pi-* modes run on amd64 (SMOP_EDGE_ANY_ARCH=1): they check the script, the
# packages it installs and the command, not aarch64 (scripts/check_aarch64.sh does that).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-trixie}"
TESTS="tests/test_decoding.py tests/test_media.py tests/test_lip_cropper.py tests/test_tokenizer.py
       tests/test_torch_free.py tests/test_vad.py tests/test_manifest.py tests/test_stream.py tests/test_transcribe.py
       tests/test_live.py tests/test_eval.py tests/test_exit_codes.py tests/test_fuzz.py tests/test_pi.py"
root=build/portable
mkdir -p $root

NUMPY="numpy"  # the requirement the venv gets beside the toolkit's own
check() {  # $1: python, $2: a folder for the venv and the source copy (as the python sees it), $3: run prefix
    local py="$1" dir="$2"; shift 2
    "$@" bash -c "set -e; rm -rf $dir/src $dir/venv; mkdir -p $dir/src"
    git ls-files -z | tar -c --null -T - | "$@" tar -x -C "$dir/src"
    "$@" bash -c "set -e; $py -m venv $dir/venv; cd $dir/src
        $dir/venv/bin/python -m pip install -q --upgrade pip
        $dir/venv/bin/python -m pip install -q . pytest scikit-image '$NUMPY'
        $dir/venv/bin/python -m smop_edge.runtime.face_mesh
        $dir/venv/bin/python -c 'import sys, numpy, cv2, onnxruntime, openvino; print(\"python\", sys.version.split()[0], \"numpy\", numpy.__version__, \"opencv\", cv2.__version__, \"onnxruntime\", onnxruntime.__version__, \"openvino\", openvino.__version__)'
        $dir/venv/bin/python -m pytest -q -p no:cacheprovider $(echo $TESTS)"
}

bootstrap() {  # $1: suite, $2: rootfs; a minimal Debian with python3 (made once), networked like the host
    local suite="$1" rootfs="$2"
    if [ ! -x $rootfs/usr/bin/python3 ]; then
        command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; }
        debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates $suite $rootfs \
            http://deb.debian.org/debian
    fi
    cp /etc/resolv.conf $rootfs/etc/resolv.conf
    cp /etc/ssl/certs/ca-certificates.crt $rootfs/etc/ssl/certs/ca-certificates.crt  # the host's trust (proxies)
    [ -f /etc/pip.conf ] && cp /etc/pip.conf $rootfs/etc/pip.conf
    [ -d /etc/apt/apt.conf.d ] && cp /etc/apt/apt.conf.d/*proxy* $rootfs/etc/apt/apt.conf.d/ 2>/dev/null || true
}

mount_in() {  # $1: rootfs; /proc and /sys (OpenVINO reads the CPU topology there), unmounted at exit
    mountpoint -q $1/proc || mount -t proc proc $1/proc
    mountpoint -q $1/sys || mount --bind /sys $1/sys
    trap "umount $1/proc $1/sys" EXIT
}

pi_install() {  # $1: suite; install.sh in a copy of the minimal rootfs, then the command as the service runs it
    local base=$root/$1-amd64 rootfs=$root/pi-$1
    bootstrap $1 $base
    rm -rf $rootfs && mkdir -p $rootfs
    tar -C $base --exclude=./check --exclude='./tmp/*' -c . | tar -x -C $rootfs  # without the trixie mode's venv
    mount_in $rootfs
    chroot $rootfs bash -c "apt-get update -qq && apt-get install -y -qq systemd >/dev/null"  # as on a Pi: verify needs it
    chroot $rootfs useradd -m pi
    mkdir -p $rootfs/home/pi/smop-edge
    git ls-files -z | tar -c --null -T - | tar -x -C $rootfs/home/pi/smop-edge
    local sample=/home/pi/smop-edge/models/demo/samples/sample-2.mp4
    chroot $rootfs env -u PIP_FIND_LINKS SUDO_USER=pi SMOP_EDGE_ANY_ARCH=1 bash /home/pi/smop-edge/scripts/pi/install.sh -- --mic 1
    chroot $rootfs runuser -u pi -- env SMOP_EDGE_CACHE=/opt/smop-edge/cache smop-edge pi --input $sample \
        --speed 0 --view lines --txt /opt/smop-edge/captions/captions.txt --append
    chroot $rootfs runuser -u pi -- bash -c "cd /tmp && smop-edge bench --preset pi --quiet"  # torch-free
    chroot $rootfs bash -c "cat /opt/smop-edge/captions/captions.txt; grep ExecStart= /etc/systemd/system/smop-edge-pi.service
        /opt/smop-edge/venv/bin/python -c 'import sys, numpy; print(\"python\", sys.version.split()[0], \"numpy\", numpy.__version__)'
        du -sh /opt/smop-edge/venv; /opt/smop-edge/venv/bin/python -m pip list 2>/dev/null | wc -l"
    if chroot $rootfs /opt/smop-edge/venv/bin/python -c 'import torch' 2>/dev/null; then
        echo "torch is in the Pi install" >&2; exit 1
    fi
    # the host's systemd reads the whole rootfs's units: keep what it says of ours (exit status: ours alone)
    local said; said="$(systemd-analyze verify --root=$rootfs /etc/systemd/system/smop-edge-pi.service 2>&1)" || \
        { echo "$said" >&2; exit 1; }
    grep smop-edge-pi <<< "$said" || true
    echo "pi-$1: PASSED"
}

case "$mode" in
  host)
    check python3 "$PWD/$root/host" env ;;
  host-numpy1)
    NUMPY="numpy<2"
    check python3 "$PWD/$root/host-numpy1" env ;;
  trixie)
    rootfs=$root/trixie-amd64
    bootstrap trixie $rootfs
    mount_in $rootfs
    check python3 /check chroot $rootfs ;;
  pi-trixie|pi-bookworm)
    pi_install ${mode#pi-} ;;
  *)
    echo "usage: $0 host|host-numpy1|trixie|pi-trixie|pi-bookworm" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# smop-edge's Raspberry Pi demo on Raspberry Pi OS (64-bit, bookworm or trixie): the lean runtime (no torch, no
# mediapipe, no Qt) in PREFIX/venv, mediapipe's two face models, the `smop-edge` command on PATH, and the
# smop-edge-pi systemd service (captions full-screen on the display's console; started at boot).
#
#   sudo bash scripts/pi/install.sh                      # then: smop-edge pi --check
#   sudo bash scripts/pi/install.sh -- --mic 1           # flags after -- go to the service's `smop-edge pi`
#   sudo bash scripts/pi/install.sh --no-service         # the command only
#   options: --user NAME (runs the service; default: the sudo user), --prefix DIR (default /opt/smop-edge)
#
# Re-running updates the install. Needs the network for apt and PyPI; everything else comes from this checkout.
set -euo pipefail
src="$(cd "$(dirname "$0")/../.." && pwd)"
prefix=/opt/smop-edge
user="${SUDO_USER:-}"
service=1
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix="$2"; shift 2 ;;
        --user) user="$2"; shift 2 ;;
        --no-service) service=0; shift ;;
        --) shift; args=("$@"); break ;;
        *) echo "usage: sudo bash $0 [--prefix DIR] [--user NAME] [--no-service] [-- SMOP-EDGE-PI FLAGS]" >&2; exit 2 ;;
    esac
done
say() { echo "install: $*" >&2; }
[ "$(id -u)" -eq 0 ] || { say "run it as root: sudo bash $0"; exit 2; }
[ -n "$user" ] || user=root
id "$user" >/dev/null 2>&1 || { say "no user $user (--user NAME)"; exit 2; }
arch="$(uname -m)"
if [ "$arch" != aarch64 ] && [ -z "${SMOP_EDGE_ANY_ARCH:-}" ]; then
    say "this is $arch: the Pi demo wants 64-bit Raspberry Pi OS (aarch64); 32-bit has no wheels for the runtime"
    exit 2
fi
. /etc/os-release
case "${VERSION_CODENAME:-}" in
    bookworm|trixie) ;;
    *) say "warning: written for Raspberry Pi OS bookworm and trixie; this is ${PRETTY_NAME:-unknown}" ;;
esac

say "Debian packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# libportaudio2: the microphone; kbd: setfont for the large console font
apt-get install -y -qq --no-install-recommends python3-venv libportaudio2 kbd ca-certificates >/dev/null
# the Pi camera's program comes from Raspberry Pi OS's own repository; elsewhere a USB camera is read by OpenCV
if apt-cache show rpicam-apps-lite >/dev/null 2>&1 && ! command -v rpicam-vid >/dev/null; then
    apt-get install -y -qq --no-install-recommends rpicam-apps-lite >/dev/null
fi

say "Python packages into $prefix/venv (the first time: a few minutes)"
python3 -m venv "$prefix/venv"
"$prefix/venv/bin/python" -m pip install -q --upgrade pip
"$prefix/venv/bin/python" -m pip install -q "$src[pi]"
say "mediapipe's face models"
"$prefix/venv/bin/python" -m smop_edge.runtime.face_mesh >/dev/null
ln -sf "$prefix/venv/bin/smop-edge" /usr/local/bin/smop-edge
install -d -o "$user" "$prefix/cache" "$prefix/captions"

unit=/etc/systemd/system/smop-edge-pi.service
flags=""
[ ${#args[@]} -eq 0 ] || flags="$(printf ' %q' "${args[@]}")"
sed -e "s|@PREFIX@|$prefix|g" -e "s|@USER@|$user|g" -e "s| @ARGS@|${flags% }|" \
    "$src/scripts/pi/smop-edge-pi.service" > "$unit"
say "wrote $unit (runs: smop-edge pi${flags% })"
if [ "$service" -eq 1 ]; then
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload
        systemctl enable smop-edge-pi.service
        say "enabled: captions on the display from the next boot; now: sudo systemctl start smop-edge-pi"
    else
        say "systemd is not running here: enable it later with systemctl enable --now smop-edge-pi"
    fi
fi
say "checking the board (smop-edge pi --check)"
runuser -u "$user" -- env SMOP_EDGE_CACHE="$prefix/cache" "$prefix/venv/bin/smop-edge" pi --check || \
    say "the check found problems (above); captions may still work from a file: smop-edge pi --input FILE"

"""`smop-edge pi`: the Raspberry Pi demo. Live captions from the Pi's microphone and camera (the Pi camera
through libcamera, or a USB camera), or a file, on the live engine of `smop-edge live` (same flags), shown
full-screen on the console of an attached display, or as lines for a log when there is none. `--check` is
the first-run check: the board (clock, temperature, throttling), the devices, the bundle and how fast this
board decodes. `scripts/pi/install.sh` installs it as a systemd service."""

from __future__ import annotations

import argparse
import sys
import time

from smop_edge.runtime.errors import SmopEdgeError, UsageError

from .common import open_bundle
from .live import DESCRIPTION, Printer, add_live_flags, run_live


def register(sub: argparse._SubParsersAction) -> None:
    """Add `pi`."""
    p = sub.add_parser("pi", help="the Raspberry Pi demo: full-screen live captions, a first-run check",
                       description="The Raspberry Pi demo. " + DESCRIPTION)
    p.add_argument("--check", action="store_true",
                   help="first-run check: board, clocks and temperature, devices, bundle, decoding speed; exit 1 "
                        "if the board cannot caption")
    p.add_argument("--view", choices=["auto", "screen", "lines"], default="auto",
                   help="screen: full-screen captions (the console of a display); lines: a line a final (logs); "
                        "auto: screen on a terminal, else lines (default)")
    add_live_flags(p)
    p.set_defaults(func=run_pi)


def run_pi(args: argparse.Namespace) -> int:
    """The check, or live captions in the chosen view."""
    if args.check:
        return check(args)
    view = args.view
    if view == "auto":
        view = "screen" if sys.stdout.isatty() and not args.json else "lines"
    if view == "screen":
        if args.json:
            raise UsageError("--json writes lines: it takes --view lines, not screen")
        from ..screen import CaptionScreen

        return run_live(args, CaptionScreen(title="smop-edge"))
    return run_live(args, Printer(args.json))


def check(args: argparse.Namespace) -> int:
    """Print what a Pi owner needs before leaving the demo running; 1 when it cannot caption here (no bundle,
    no face models, no microphone, or decoding slower than real time)."""
    from smop_edge.runtime import DEMO_BUNDLE, face_mesh
    from smop_edge.runtime.live import cameras, microphones

    from ..board import board_info

    problems: list[str] = []
    board = board_info()
    print(f"board:       {board.describe()}")
    for warning in board.warnings():
        print(f"  warning: {warning}")
    mics, cams = microphones(), cameras()
    print(f"microphones: {', '.join(f'{i}: {name}' for name, i in mics) if mics else 'none'}")
    print(f"cameras:     {', '.join(map(str, cams)) if cams else 'none (captions from audio alone)'}")
    if not mics and not args.input:
        problems.append("no microphone (plug in a USB microphone; see --list-devices)")
    try:
        print(f"face models: {face_mesh.model_dir()}")
    except SmopEdgeError as exc:
        problems.append(str(exc))
    try:
        rec = open_bundle(args)
    except SmopEdgeError as exc:
        print(f"bundle:      {exc}")
        return 1
    print(f"bundle:      {rec.bundle.path} ({', '.join(rec.tasks)}; {rec.backend}, "
          f"{args.threads or board.cores} threads)")
    samples = sorted((DEMO_BUNDLE.parent / "samples").glob("*.mp4"))
    for task in [t for t in ("asr", "avsr") if t in rec.tasks]:
        rec.transcribe(samples[0], task=task)  # warm-up: graphs, face models
        began, seconds = time.perf_counter(), 0.0
        for sample in samples:
            seconds += rec.transcribe(sample, task=task).duration
        took = time.perf_counter() - began
        print(f"speed:       {task.upper()} of the {len(samples)} sample clips ({seconds:.1f} s) in {took:.2f} s: "
              f"RTF {took / seconds:.2f} (media, lip crops and model)")
        if took > seconds:
            problems.append(f"{task.upper()} is slower than real time here: live captions will fall behind")
    after = board_info()
    print(f"after:       {after.describe()}")
    for problem in problems:
        print(f"problem:     {problem}")
    print("ready: sudo systemctl start smop-edge-pi (or run smop-edge pi)" if not problems else "not ready")
    return 1 if problems else 0

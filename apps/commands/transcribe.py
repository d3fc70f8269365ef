"""`smop-edge transcribe` (media files to text with a bundle, or with the torch reference) and
`smop-edge crop` (the mouth crops `transcribe` sees, written out to look at). The runtime path: torch is
imported only by `--backend torch`."""

from __future__ import annotations

import argparse
import json
import sys

from smop_edge.runtime.errors import UsageError

from .common import add_backend_flags, add_decoding_flags, decoding_options, open_bundle


def register(sub: argparse._SubParsersAction) -> None:
    """Add `transcribe` and `crop`."""
    _add_transcribe(sub)
    _add_crop(sub)


# ---- transcribe --------------------------------------------------------------------------------------
def _add_transcribe(sub: argparse._SubParsersAction) -> None:
    """`transcribe`: media, task, backend, decoding, output format and the torch reference's inputs."""
    p = sub.add_parser("transcribe", help="transcribe audio / video files with a bundle",
                       description="Decode media, crop the mouth, and recognise speech with a bundle "
                                   "(default: the demo bundle). Exit codes: 0 done, 2 usage, 3 unreadable "
                                   "input, 4 invalid bundle, 5 input unsuitable for the model's tasks.")
    p.add_argument("media", nargs="+", help="video (mp4, mkv, avi, mov, webm) or audio (wav, flac, mp3, ogg)")
    p.add_argument("--task", choices=["auto", "asr", "vsr", "avsr"], default="auto")
    add_backend_flags(p, ["onnxruntime", "openvino", "litert", "executorch", "torch"])
    add_decoding_flags(p)
    p.add_argument("--roi", action="store_true", help="the video is a pre-cropped mouth ROI (96x96)")
    p.add_argument("--format", choices=["txt", "srt", "vtt"], default="txt")
    p.add_argument("--json", action="store_true", help="text, task, timings, real-time factor, segments")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--checkpoint", help="--backend torch: the checkpoint")
    p.add_argument("--tokenizer", help="--backend torch: the base LLM's tokenizer.json")
    p.add_argument("--audio-mode", choices=["faithful", "fast"], default="faithful", help="--backend torch only")
    p.set_defaults(func=run_transcribe)


def run_transcribe(args: argparse.Namespace) -> int:
    """Transcribe each file in turn, printing its transcript (or all of them as JSON at the end)."""
    from smop_edge.runtime.transcribe import progress_bar, transcribe_media

    from ..formats import render

    if args.backend == "torch":
        if not (args.checkpoint and args.tokenizer):
            raise UsageError("--backend torch needs --checkpoint CKPT and --tokenizer tokenizer.json")
        from smop_edge.models.reference import ReferenceRecognizer  # the only torch import on this path

        rec = ReferenceRecognizer.from_checkpoint(args.checkpoint, args.tokenizer, audio_mode=args.audio_mode)
    else:
        if args.task != "asr":  # the face models compile while the bundle loads (start-up: issue 36)
            from smop_edge.runtime.face_mesh import warm_up_in_background

            warm_up_in_background()
        rec = open_bundle(args)
    options = decoding_options(args)
    task = None if args.task == "auto" else args.task
    results = []
    for path in args.media:
        result = transcribe_media(rec, path, task, args.roi, options, progress_bar(not args.quiet))
        for warning in result.warnings:
            print(f"smop-edge: warning: {path}: {warning}", file=sys.stderr)
        results.append(result)
        if not args.json:
            if len(args.media) > 1 and args.format == "txt":
                print(f"{path}: {render(result, 'txt')}")
            else:
                print(render(result, args.format))
    if args.json:
        data = [r.to_dict() for r in results]
        print(json.dumps(data[0] if len(data) == 1 else data, indent=2))
    return 0


# ---- crop -------------------------------------------------------------------------------------------
def _add_crop(sub: argparse._SubParsersAction) -> None:
    """`crop`: video and the two output videos."""
    p = sub.add_parser("crop", help="write the mouth crops of a video so a person can look at them",
                       description="Lip cropping as `transcribe` does it: 96x96 mouth crops at 25 fps, and "
                                   "optionally the video with the crop's outline drawn on every frame.")
    p.add_argument("media")
    p.add_argument("--out", required=True, help="crops video (mp4)")
    p.add_argument("--overlay", help="preview video with the crop outline (mp4)")
    p.set_defaults(func=run_crop)


def run_crop(args: argparse.Namespace) -> int:
    """Write the crops video (and the overlay preview); exit 5 without a video track or a face."""
    from smop_edge.runtime import media
    from smop_edge.runtime.errors import UnsuitableInputError
    from smop_edge.runtime.lip_cropper import crop_mouths_with_transforms, draw_crop_box

    info = media.probe(args.media)
    if not info.has_video:
        raise UnsuitableInputError(f"{args.media} has no video track")
    audio = media.read_audio(args.media, info.start) if info.has_audio else None
    crops, found, transforms = crop_mouths_with_transforms(lambda: media.iter_video(args.media, start=info.start),
                                                           audio)
    if not found:
        raise UnsuitableInputError(f"{args.media}: no face found")
    media.write_video(args.out, crops, audio=audio)
    if args.overlay:
        frames = media.iter_video(args.media, start=info.start)
        media.write_video(args.overlay, (draw_crop_box(f, m) for f, m in zip(frames, transforms)), audio=audio)
    print(f"{args.out}: {len(crops)} mouth crops (96x96, 25 fps); face found in {found}/{len(crops)} frames")
    return 0

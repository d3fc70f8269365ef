"""Torch-free inference: media, lip crops, features, graph sessions, routing, decoding, and the one
public API every app uses:

    from smop_edge.runtime import load_recognizer
    rec = load_recognizer()                  # the embedded demo model, or load_recognizer("bundle/")
    rec.transcribe("clip.mp4").text          # a media file (or arrays: audio=..., frames=...)
    stream = rec.create_stream()             # live input: accept_waveform / accept_frame / decode

Nothing under this package may import torch, the model package or the recipe (a test enforces it).
"""

from __future__ import annotations

from pathlib import Path

from .decoding import DecodingOptions
from .errors import BundleError, InputError, SmopEdgeError, UnsuitableInputError, UsageError
from .manifest import MANIFEST
from .recognizer import Recognizer, Transcript
from .stream import Stream, StreamOptions, StreamResult
from .transcribe import FileTranscript, Segment

# the shipped demo model's bundle (the repository's models/demo/bundle)
DEMO_BUNDLE = Path(__file__).resolve().parent.parent / "models" / "demo" / "bundle"


def load_recognizer(bundle: str | Path | None = None, backend: str = "auto", device: str = "CPU",
                    threads: int | None = None, precision: str = "f32", digest: str | None = None,
                    exact: bool = True) -> Recognizer:
    """Open a bundle (default: the embedded demo model) after checking every file's sha256; `digest` pins
    the manifest's sha256 (as `smop-edge verify` prints it), which fixes every file of the bundle. `exact=False`
    lets the engines quantize activations to int8 beside int8/int4 weights (faster, inexact)."""
    if bundle is None:
        if not (DEMO_BUNDLE / MANIFEST).is_file():
            raise UsageError("no bundle given and the demo bundle is not installed (see the README)")
        bundle = DEMO_BUNDLE
    return Recognizer.from_bundle(bundle, backend=backend, device=device, threads=threads, precision=precision,
                                 exact=exact, digest=digest)


__all__ = ["load_recognizer", "Recognizer", "Transcript", "FileTranscript", "Segment", "Stream", "StreamOptions",
           "StreamResult", "DecodingOptions", "DEMO_BUNDLE", "SmopEdgeError", "UsageError", "InputError",
           "BundleError", "UnsuitableInputError"]

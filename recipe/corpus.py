"""The synthetic audio-visual corpus of the demo model: spoken alphanumeric strings ("seven b four
zero"), several TTS voices with channel variation, talking faces, written as mp4 + a JSONL manifest.

Clean by design: noise is mixed in at training time and by `eval`, never baked in. Utterance i of
a (seed, split) is the same whatever else is generated, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from smop_edge.runtime.errors import UsageError
from smop_edge.runtime.features import SAMPLE_RATE, VIDEO_FPS

from . import face_scene, speech_synth
from .talking_face import viseme_track

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]
WORDS = [*DIGITS, "oh", *LETTERS]  # every word a transcript can hold
# How a TTS engine is asked to say each letter (names spelled out: a bare "a" is read as the article)
LETTER_NAMES = {"a": "ay", "b": "bee", "c": "see", "d": "dee", "e": "ee", "f": "eff", "g": "gee", "h": "aitch",
                "i": "eye", "j": "jay", "k": "kay", "l": "ell", "m": "em", "n": "en", "o": "oh", "p": "pee",
                "q": "cue", "r": "are", "s": "ess", "t": "tee", "u": "you", "v": "vee", "w": "double you",
                "x": "ex", "y": "why", "z": "zee"}
SPLITS = ("train", "test", "sealed")  # test: the dev set choices are made on; sealed: the final table
MANIFEST = "manifest.jsonl"


@dataclass
class Utterance:
    """One clip of the corpus as the manifest records it (`path` is relative to the manifest)."""

    id: str
    path: str
    text: str
    voice: str
    face: str
    split: str
    seconds: float = 0.0


def sample_words(rng: np.random.Generator, max_items: int = 8) -> list[str]:
    """1 to `max_items` items, digits and letters equally likely per symbol; zero is said "oh" one time
    in five (the letter o sounds the same, so "oh" is kept rare)."""
    words = []
    for _ in range(int(rng.integers(1, max_items + 1))):
        symbol = int(rng.integers(36))
        if symbol < 10:
            words.append("oh" if symbol == 0 and rng.random() < 0.2 else DIGITS[symbol])
        else:
            words.append(LETTERS[symbol - 10])
    return words


def spoken_form(word: str, zed: bool = False) -> str:
    """What a TTS engine is asked to read for one transcript word ("zed" for z with British voices)."""
    return "zed" if (word == "z" and zed) else LETTER_NAMES.get(word, word)


def spoken_text(words: list[str], rng: np.random.Generator, zed: bool = False) -> str:
    """What the TTS engine reads: letter names spelled out, items grouped with pauses (commas)."""
    out = []
    for i, w in enumerate(words):
        said = spoken_form(w, zed)
        sep = "" if i == len(words) - 1 else (", " if rng.random() < 0.3 else " ")
        out.append(said + sep)
    return "".join(out)


def utterance_id(split: str, seed: int, index: int) -> str:
    return f"{split}-{seed}-{index:06d}"


def _voices(split: str) -> list[speech_synth.Voice]:
    return speech_synth.VOICES[split]


def make_clip(index: int, seed: int, split: str, out_dir: Path) -> Utterance:
    """Synthesise utterance `index` of (seed, split): speech, channel, lead/tail silence, talking
    face; write `<split>/<id>.mp4` under `out_dir`."""
    from smop_edge.runtime.media import write_video

    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    voices, faces = _voices(split), face_scene.identities(split)
    voice = voices[int(rng.integers(len(voices)))]
    identity = faces[int(rng.integers(len(faces)))]
    words = sample_words(rng)
    speech, phones = speech_synth.synthesize(spoken_text(words, rng, voice.zed), voice,
                                             rate=float(rng.uniform(0.8, 1.25)))
    speech = speech_synth.Channel.sample(rng).apply(speech)
    lead, tail = rng.uniform(0.0, 0.4, 2)
    audio = np.concatenate([np.zeros(int(lead * SAMPLE_RATE), np.float32), speech,
                            np.zeros(int(tail * SAMPLE_RATE), np.float32)])
    phones = [("pau", float(lead))] + [(p, t + float(lead)) for p, t in phones]
    n_frames = int(np.ceil(len(audio) / SAMPLE_RATE * VIDEO_FPS))
    audio = np.pad(audio, (0, n_frames * SAMPLE_RATE // VIDEO_FPS - len(audio)))
    scene = face_scene.Scene.sample(rng, n_frames)
    uid = utterance_id(split, seed, index)
    rel = f"{split}/{uid}.mp4"
    (out_dir / split).mkdir(parents=True, exist_ok=True)
    write_video(out_dir / rel, face_scene.render_clip(identity, viseme_track(phones, n_frames), scene, rng),
                audio=audio, quality=int(rng.integers(2, 13)))
    return Utterance(uid, rel, " ".join(words), voice.id, identity.id, split, round(len(audio) / SAMPLE_RATE, 3))


def _make(args: tuple[int, int, str, Path]) -> dict:
    return asdict(make_clip(*args))


def read_manifest(path: str | Path) -> list[dict]:
    """The manifest's rows; each row's `path` resolved against the manifest's folder (as `file`)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no manifest at {path}")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            row["file"] = str(path.parent / row["path"])
            row["text"] = str(row["text"])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise UsageError(f"{path}:{n}: not a manifest row with path and text ({e})") from e
        rows.append(row)
    return rows


def synth_corpus(out: str | Path, n: int, seed: int = 0, split: str = "train", workers: int = 1,
                 progress: Callable[[int, int], None] | None = None) -> Path:
    """Make `n` utterances of `split` in `out` (resuming: rows already in the manifest are kept) and
    return the manifest path."""
    if split not in SPLITS:
        raise UsageError(f"split must be one of {', '.join(SPLITS)}")
    if n < 1:
        raise UsageError(f"--n must be at least 1 (utterances to make), got {n}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / MANIFEST
    done = {row["id"] for row in read_manifest(manifest)} if manifest.exists() else set()
    todo = [(i, seed, split, out) for i in range(n) if utterance_id(split, seed, i) not in done]
    count = len(done)
    with manifest.open("a") as f:
        if workers > 1:
            pool = multiprocessing.get_context("spawn").Pool(workers)
            rows = pool.imap(_make, todo)
        else:
            pool, rows = None, map(_make, todo)
        try:
            for row in rows:
                f.write(json.dumps(row) + "\n")
                f.flush()
                count += 1
                if progress:
                    progress(count, n)
        finally:
            if pool:
                pool.terminate()
    return manifest

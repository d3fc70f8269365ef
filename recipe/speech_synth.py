"""Speech from three offline TTS engines (flite, festival, espeak-ng) with the phone timings the
talking-face renderer needs, plus channel variation (pitch, band limit, telephone band, EQ, level).

Each engine reports its own timings: flite `-psdur`, festival's segment relation, espeak-ng phoneme
events through libespeak-ng (its `--pho` output needs MBROLA voices, which Debian main lacks).
"""

from __future__ import annotations

import ctypes
import os
import pickle
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from smop_edge.runtime.features import SAMPLE_RATE
from smop_edge.runtime.media import read_audio

from .talking_face import parse_psdur

T = TypeVar("T")

Phones = list[tuple[str, float]]  # (phone, end time in seconds)


@dataclass(frozen=True)
class Voice:
    """One TTS voice: `engine` is flite, festival or espeak; `name` the engine's voice name
    (espeak: language+variant, e.g. `en-us+f3`); `zed`: says "zed" for z (British voices)."""

    engine: str
    name: str
    zed: bool = False

    @property
    def id(self) -> str:
        return f"{self.engine}:{self.name}"


def _espeak(lang: str, variants: list[str], zed: bool = False) -> list[Voice]:
    return [Voice("espeak", f"{lang}+{v}", zed) for v in variants]


# Training and held-out (dev: the `test` split) voices are disjoint; engines and sexes appear on both sides.
TRAIN_VOICES: list[Voice] = [
    Voice("flite", "kal"), Voice("flite", "kal16"), Voice("flite", "awb", zed=True), Voice("flite", "slt"),
    Voice("festival", "kal_diphone"), Voice("festival", "cmu_us_slt_arctic_hts"),
    *_espeak("en-us", ["m1", "m2", "m4", "f1", "f2", "f4", "klatt", "klatt3", "Andy", "Annie", "john"]),
    *_espeak("en-gb-x-rp", ["m3", "f3", "klatt2", "edward"], zed=True),
    *_espeak("en-gb-scotland", ["m5", "f5", "michel"], zed=True),
    *_espeak("en-029", ["m6", "linda"]),
]
TEST_VOICES: list[Voice] = [
    Voice("flite", "rms"), Voice("festival", "ked_diphone"),
    *_espeak("en-us", ["m3", "f3", "klatt4"]),
    *_espeak("en-gb-x-gbclan", ["m7", "f4"], zed=True),
    *_espeak("en-gb-x-gbcwmd", ["Alex", "belinda"], zed=True),
]
# The sealed test split (for the final table only; nothing is tuned on it): accents and variants used in
# neither list above. flite and festival have no voice left over, so this split is espeak-ng only.
SEALED_VOICES: list[Voice] = [
    *_espeak("en-us-nyc", ["m8", "klatt5", "Andrea", "Gene"]),
    *_espeak("en", ["Lee", "klatt6", "Alicia", "david"], zed=True),  # "en" is espeak-ng's British English
]
VOICES = {"train": TRAIN_VOICES, "test": TEST_VOICES, "sealed": SEALED_VOICES}


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)
    except FileNotFoundError as e:
        raise RuntimeError(f"{cmd[0]} is not installed (scripts/setup.sh installs it)") from e
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"{cmd[0]} failed: {e.stderr.strip()[-300:]}") from e


def _flite(text: str, voice: str, rate: float, wav: Path) -> Phones:
    out = _run(["flite", "-voice", voice, "--setf", f"duration_stretch={1 / rate:.3f}", "-psdur",
                "-t", text, "-o", str(wav)])
    return parse_psdur(out.stdout)


def _festival(text: str, voice: str, rate: float, wav: Path) -> Phones:
    segs = wav.with_suffix(".segs")
    script = wav.with_suffix(".scm")
    quoted = text.replace("\\", " ").replace('"', " ")
    script.write_text(f'(voice_{voice})\n(Parameter.set \'Duration_Stretch {1 / rate:.3f})\n'
                      f'(set! u (utt.synth (Utterance Text "{quoted}")))\n'
                      f'(utt.save.wave u "{wav}")\n(utt.save.segs u "{segs}")\n')
    _run(["festival", "-b", str(script)])
    phones = []
    for line in segs.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] != "#":
            phones.append((parts[2], float(parts[0])))
    return phones


# ---- espeak-ng through its C API: audio plus phoneme events ------------------------------------
def in_fork(work: Callable[[], T], died: str, seed: int = 1) -> T:
    """work()'s result, computed in a fork of this process with libc's rand() seeded `seed` first, so that
    nothing it changes (espeak-ng's state) outlives it; its error is raised here, `died` if it sent none."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: work, send the result (or the error) back, exit whatever happens
        try:
            os.close(read)
            try:
                ctypes.CDLL(None).srand(seed)
                result = work()
            except Exception as e:  # noqa: BLE001 - raised again in the parent
                result = e
            with os.fdopen(write, "wb") as f:
                pickle.dump(result, f)
        finally:
            os._exit(0)  # never back into the parent's code, and without its cleanup
    os.close(write)
    try:
        with os.fdopen(read, "rb") as f:
            result = pickle.load(f)
    except EOFError:
        result = RuntimeError(died)
    finally:
        os.waitpid(pid, 0)
    if isinstance(result, Exception):
        raise result
    return result


class _EspeakEvent(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


_EVENT_END, _EVENT_PHONEME = 0, 7  # espeakEVENT_LIST_TERMINATED, espeakEVENT_PHONEME
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_EspeakEvent))


class _Espeak:
    """libespeak-ng in synchronous mode with phoneme events (one per process). It speaks only in forks
    of the process: espeak-ng carries state from one synthesis to the next and draws from libc's rand(),
    so in place the same request would sound different after other requests (or after a library that
    called rand()); each fork starts from the freshly initialised engine with rand() reseeded, and the
    same request gives the same samples in any process, in any order."""

    _instance: "_Espeak | None" = None

    def __init__(self) -> None:
        try:
            self.lib = ctypes.CDLL("libespeak-ng.so.1")
        except OSError as e:
            raise RuntimeError("libespeak-ng is not installed (scripts/setup.sh installs espeak-ng)") from e
        self.rate = self.lib.espeak_Initialize(2, 0, None, 1)  # AUDIO_OUTPUT_SYNCHRONOUS, phoneme events
        if self.rate <= 0:
            raise RuntimeError("espeak-ng failed to initialise")
        self.samples: list[np.ndarray] = []
        self.events: list[tuple[str, int]] = []
        self.callback = _CALLBACK(self._collect)
        self.lib.espeak_SetSynthCallback(self.callback)

    @classmethod
    def get(cls) -> "_Espeak":
        cls._instance = cls._instance or cls()
        return cls._instance

    def _collect(self, wav, n, events) -> int:
        if n > 0:
            self.samples.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_END:
            if events[i].type == _EVENT_PHONEME:
                self.events.append((events[i].id.decode("ascii", "replace"), events[i].audio_position))
            i += 1
        return 0

    def synth(self, text: str, voice: str, rate: float) -> tuple[np.ndarray, list[tuple[str, int]]]:
        """(16-bit-range float audio at the engine's rate, phoneme events), spoken by a fork of this process."""
        return in_fork(lambda: self._speak(text, voice, rate), f"espeak-ng died saying {text!r} with voice {voice!r}")

    def _speak(self, text: str, voice: str, rate: float) -> tuple[np.ndarray, list[tuple[str, int]]]:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"espeak-ng has no voice {voice!r}")
        self.lib.espeak_SetParameter(1, int(175 * rate), 0)  # espeakRATE, words per minute
        self.samples, self.events = [], []
        data = text.encode() + b"\0"
        self.lib.espeak_Synth(data, len(data), 0, 1, 0, 0, None, None)  # POS_CHARACTER, espeakCHARS_AUTO
        audio = np.concatenate(self.samples) if self.samples else np.zeros(0, np.int16)
        return audio.astype(np.float32) / 32768.0, self.events


# espeak-ng phoneme mnemonics -> the ARPAbet-like names the viseme table knows
_ESPEAK_PHONES = {"p": "p", "b": "b", "m": "m", "f": "f", "v": "v", "w": "w", "r": "r", "l": "l",
                  "T": "th", "D": "dh", "j": "y", "a": "ae", "aa": "aa", "A": "aa", "V": "ah", "@": "ax",
                  "3": "er", "E": "eh", "e": "ey", "I": "ih", "i": "iy", "0": "ao", "O": "ao", "o": "ow",
                  "U": "uh", "u": "uw", "_": "pau"}


def _espeak_phone(name: str) -> str:
    name = name.strip().strip("'`,%=:;")
    if not name:
        return "pau"
    for n in (len(name), 2, 1):
        if name[:n] in _ESPEAK_PHONES:
            return _ESPEAK_PHONES[name[:n]]
    return name.lower()


def _espeak_synth(text: str, voice: str, rate: float, wav: Path) -> tuple[np.ndarray, Phones]:
    engine = _Espeak.get()
    audio, events = engine.synth(text, voice, rate)
    from smop_edge.runtime.media import write_audio

    write_audio(wav, audio, engine.rate)
    starts = [(_espeak_phone(name), pos / 1000) for name, pos in events]
    duration = len(audio) / engine.rate
    phones = [(p, (starts[i + 1][1] if i + 1 < len(starts) else duration)) for i, (p, _) in enumerate(starts)]
    return audio, phones


def synthesize(text: str, voice: Voice, rate: float = 1.0) -> tuple[np.ndarray, Phones]:
    """`text` spoken by `voice` at `rate` (1 = the engine's default speed) -> (16 kHz mono float32
    audio, phone end times in seconds)."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        if voice.engine == "flite":
            phones = _flite(text, voice.name, rate, wav)
        elif voice.engine == "festival":
            phones = _festival(text, voice.name, rate, wav)
        elif voice.engine == "espeak":
            _, phones = _espeak_synth(text, voice.name, rate, wav)
        else:
            raise ValueError(f"unknown TTS engine {voice.engine!r}")
        return read_audio(wav), phones


@dataclass
class Channel:
    """What happens to the speech between the mouth and the file: pitch shift (semitones), telephone
    band (300-3400 Hz at 8 kHz, mu-law), a band limit (Hz, 0 = none), a peaking EQ and a level (dBFS peak)."""

    pitch: float = 0.0
    telephone: bool = False
    lowpass: float = 0.0
    eq_hz: float = 0.0
    eq_db: float = 0.0
    level_db: float = -3.0

    @classmethod
    def sample(cls, rng: np.random.Generator, pitch: bool = True) -> "Channel":
        telephone = rng.random() < 0.2
        return cls(pitch=float(rng.uniform(-3, 3)) if pitch else 0.0, telephone=telephone,
                   lowpass=0.0 if telephone or rng.random() < 0.6 else float(rng.uniform(4000, 7000)),
                   eq_hz=float(rng.uniform(200, 4000)) if rng.random() < 0.5 else 0.0,
                   eq_db=float(rng.uniform(-8, 8)), level_db=float(rng.uniform(-20, -1)))

    def apply(self, audio: np.ndarray) -> np.ndarray:
        """The audio through this channel, 16 kHz float32, same length: pitch by sox, the filters in
        numpy (a few ms, cheap enough to run per training example)."""
        out = np.asarray(audio, np.float32)
        if abs(self.pitch) > 0.05:  # pitch changes the rate, so `rate` brings it back
            out = _sox(out, ["pitch", f"{100 * self.pitch:.0f}", "rate", str(SAMPLE_RATE)], SAMPLE_RATE)
        f = np.fft.rfftfreq(_fft_size(len(out)), 1 / SAMPLE_RATE)
        gain = np.ones_like(f)
        if self.eq_hz:  # a peaking band one octave wide
            gain *= 10 ** (self.eq_db / 20 * np.exp(-0.5 * (np.log2(np.maximum(f, 1.0) / self.eq_hz) / 0.5) ** 2))
        if self.telephone:
            band = _band(f, 300, 3400)
            out = _mu_law(_filter(out, gain * band))
            gain = band  # the line's band again after quantisation, as its 8 kHz sampling would
        elif self.lowpass:
            gain *= _band(f, 0, self.lowpass)
        out = _filter(out, gain)
        peak = float(np.abs(out).max()) or 1.0
        return (out / peak * 10 ** (self.level_db / 20)).astype(np.float32)


def _band(f: np.ndarray, lo: float, hi: float, edge: float = 150.0) -> np.ndarray:
    """A pass band with raised-cosine edges `edge` Hz wide (lo = 0: a low-pass)."""
    up = np.clip((f - lo + edge / 2) / edge, 0, 1) if lo > 0 else np.ones_like(f)
    down = np.clip((hi + edge / 2 - f) / edge, 0, 1)
    return (0.5 - 0.5 * np.cos(np.pi * up)) * (0.5 - 0.5 * np.cos(np.pi * down))


def _fft_size(n: int) -> int:
    """The next power of two: numpy's FFT is slow on lengths with large prime factors."""
    return 1 << max(0, int(n - 1).bit_length())


def _filter(audio: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """`audio` with its spectrum scaled by `gain` (rfft bins of the padded length), same length."""
    size = _fft_size(len(audio))
    return np.fft.irfft(np.fft.rfft(audio, size) * gain, size)[: len(audio)].astype(np.float32)


def _mu_law(x: np.ndarray, mu: float = 255.0) -> np.ndarray:
    """8-bit mu-law quantisation and back, as a telephone line does."""
    x = np.clip(x / (np.abs(x).max() or 1.0), -1, 1)
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    y = np.round(y * 127) / 127
    return (np.sign(y) * ((1 + mu) ** np.abs(y) - 1) / mu).astype(np.float32)


def _sox(audio: np.ndarray, effects: list[str], out_rate: int) -> np.ndarray:
    """Run `audio` through sox `effects` (raw float32 through pipes), resampled to `out_rate`."""
    raw = ["-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1"]
    cmd = ["sox", "-V1", *raw, "-r", str(SAMPLE_RATE), "-", *raw, "-r", str(out_rate), "-", *effects]
    if effects[-2:] != ["rate", str(out_rate)]:
        cmd += ["rate", str(out_rate)]
    try:
        done = subprocess.run(cmd, input=np.asarray(audio, np.float32).tobytes(), capture_output=True, check=True)
    except FileNotFoundError as e:
        raise RuntimeError("sox is not installed (scripts/setup.sh installs it)") from e
    return np.frombuffer(done.stdout, np.float32).copy()

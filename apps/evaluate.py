"""`smop-edge eval`: corpus-level WER of a bundle on a manifest, clean and with noise mixed in at
given SNRs, and its text report. Mouth crops are cached (cropped once), so only the audio is re-mixed
per SNR. Torch-free."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from smop_edge.recipe import noise
from smop_edge.recipe.corpus import read_manifest
from smop_edge.runtime import crop_cache, lips, media
from smop_edge.runtime.decoding import DecodingOptions
from smop_edge.runtime.errors import UnsuitableInputError, UsageError
from smop_edge.runtime.features import align_audio_to_video
from smop_edge.runtime.prompt import TASK_MODALITIES
from smop_edge.runtime.scoring import word_errors, words


@dataclass
class Row:
    """One utterance under one condition."""

    id: str
    snr: float | None
    reference: str
    hypothesis: str
    errors: int
    words: int
    no_face: bool = False  # a video task found no face: scored as an empty transcript
    voice: str = ""  # the manifest's voice, when it names one
    speaker: str = ""  # the manifest's speaker (its voice when it names none): who spoke, across voices
    substitutions: int = 0  # `errors` split by kind (runtime.scoring.word_errors)
    deletions: int = 0
    insertions: int = 0

    @classmethod
    def scored(cls, uid: str, snr: float | None, reference: str, hypothesis: str, voice: str = "",
               speaker: str = "", no_face: bool = False) -> "Row":
        """The row of one transcript, its word errors counted against the reference."""
        ref = words(reference)
        e = word_errors(ref, words(hypothesis))
        return cls(uid, snr, reference, hypothesis, e.total, len(ref), no_face, voice, speaker or voice,
                   e.substitutions, e.deletions, e.insertions)


@dataclass
class Comparison:
    """A condition's WER against an earlier report's on the utterances both scored: the difference in points
    and its 95 % interval from a paired bootstrap over utterances, i.e. how far resampling the set alone would
    move it (a difference whose interval holds 0 is within the set's noise)."""

    against: str  # the earlier report's file
    utterances: int
    difference: float  # points: this report minus the earlier one
    low: float
    high: float

    @classmethod
    def paired(cls, against: str, errors: np.ndarray, earlier_errors: np.ndarray, words: np.ndarray,
               resamples: int = 10_000, seed: int = 0) -> "Comparison":
        """From per-utterance error counts of both reports and reference word counts, aligned by utterance."""
        rng, n, diffs = np.random.default_rng(seed), len(words), []
        for start in range(0, resamples, 1000):  # chunks bound the memory: [1000, n] indices at a time
            k = rng.integers(n, size=(min(1000, resamples - start), n))
            diffs.append((errors[k].sum(1) - earlier_errors[k].sum(1)) / np.maximum(words[k].sum(1), 1))
        low, high = np.percentile(100 * np.concatenate(diffs), [2.5, 97.5])
        difference = 100 * (errors.sum() - earlier_errors.sum()) / max(words.sum(), 1)
        return cls(against, n, float(difference), float(low), float(high))


@dataclass
class Condition:
    """WER of the whole manifest under one noise condition (`snr` None: clean)."""

    snr: float | None
    wer: float = 0.0
    errors: int = 0
    words: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    rows: list[Row] = field(default_factory=list)
    voices: dict[str, dict] = field(default_factory=dict)  # voice -> the same tally, when rows name one
    speakers: dict[str, dict] = field(default_factory=dict)  # speaker -> the same tally
    speaker_wer: float | None = None  # mean WER of the speakers with MIN_SPEAKER_WORDS words or more
    speakers_in_mean: list[str] = field(default_factory=list)  # those speakers
    against: Comparison | None = None  # with `eval --against`: this condition against the earlier report's

    def tally(self) -> None:
        """Corpus-level WER and error counts, overall, per voice and per speaker, and the per-speaker
        mean, in which each speaker weighs the same however many words they said."""
        for key, value in _score(self.rows).items():
            setattr(self, key, value)
        self.voices = _score_by(self.rows, "voice")
        self.speakers = _score_by(self.rows, "speaker")
        self.speakers_in_mean = [s for s, t in self.speakers.items() if t["words"] >= MIN_SPEAKER_WORDS]
        counted = [self.speakers[s]["wer"] for s in self.speakers_in_mean]
        self.speaker_wer = sum(counted) / len(counted) if counted else None


_COUNTS = ("errors", "words", "substitutions", "deletions", "insertions")
# A speaker with fewer words moves by more than 10 points per error: left out of the per-speaker mean.
MIN_SPEAKER_WORDS = 10


def _score(rows: list[Row]) -> dict:
    """The corpus-level tally of `rows`: summed counts, and WER = summed word errors / summed reference words."""
    counts = {key: sum(getattr(r, key) for r in rows) for key in _COUNTS}
    return {"wer": counts["errors"] / counts["words"] if counts["words"] else 0.0, **counts}


def _score_by(rows: list[Row], key: str) -> dict[str, dict]:
    """The tally of the rows of each value of `key` (rows without one left out), by value."""
    return {value: _score([r for r in rows if getattr(r, key) == value])
            for value in sorted({getattr(r, key) for r in rows if getattr(r, key)})}


@dataclass
class Report:
    manifest: str
    bundle: str
    task: str
    noise: str
    conditions: list[Condition]
    decoding: DecodingOptions = field(default_factory=DecodingOptions)

    @property
    def wer(self) -> float:
        """Pooled over every condition (the single condition's WER when there is one)."""
        return _score([r for c in self.conditions for r in c.rows])["wer"]

    def to_dict(self) -> dict:
        return {"wer": round(self.wer, 6), **asdict(self)}


def _inputs(row: dict, task: str, cache: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The row's clean audio and normalised mouth frames, as the task needs them (frames None when
    the task needs video and no face was found)."""
    need = TASK_MODALITIES[task]
    info = media.probe(row["file"])
    audio = frames = None
    if "audio" in need:
        if not info.has_audio:
            raise UnsuitableInputError(f"{row['file']}: task {task} needs audio, the file has none")
        audio = media.read_audio(row["file"], info.start)
    if "video" in need:
        if not info.has_video:
            raise UnsuitableInputError(f"{row['file']}: task {task} needs video, the file has none")
        rois, found = crop_cache.mouth_rois(row["file"], cache)
        if not found:
            return audio, None
        frames = lips.normalize_rois(rois)
        if audio is not None:
            audio = align_audio_to_video(audio, len(frames))
    return audio, frames


def evaluate(rec, manifest: str, task: str, snrs: list[float | None], noise_kind: str = "babble",
             seed: int = 0, cache: str | None = None, limit: int | None = None,
             progress: Callable[[str, int, int], None] | None = None, bundle: str = "",
             options: DecodingOptions | None = None) -> Report:
    """Transcribe every row of `manifest` once per SNR (None: clean) with `rec` (a Recognizer from
    `bundle`), searching as `options` say (default: greedy). A row whose video shows no face, under a
    task that needs video, counts as an empty transcript (every word deleted) and is flagged `no_face`:
    the cropper's misses are the system's."""
    if task not in rec.tasks:
        raise UnsuitableInputError(f"the bundle supports {', '.join(rec.tasks)}, not {task}")
    if "audio" not in TASK_MODALITIES[task] and any(s is not None for s in snrs):
        raise UsageError("--snr mixes noise into the audio; task vsr has none")
    options = options or DecodingOptions()
    rows = read_manifest(manifest)[:limit]
    cache = cache or str(crop_cache.beside(manifest))
    conditions = [Condition(snr) for snr in snrs]
    for i, row in enumerate(rows):
        audio, frames = _inputs(row, task, cache)
        uid, voice, speaker = row.get("id", row["path"]), row.get("voice", ""), row.get("speaker", "")
        no_face = "video" in TASK_MODALITIES[task] and frames is None
        for cond in conditions:
            if no_face:
                cond.rows.append(Row.scored(uid, cond.snr, row["text"], "", voice, speaker, no_face=True))
                continue
            mixed = audio
            if audio is not None and cond.snr is not None:
                rng = np.random.default_rng([seed, zlib.crc32(uid.encode()), int(cond.snr * 10) + 1000])
                mixed = noise.mix_at_snr(audio, noise.noise_like(noise_kind, len(audio), rng), cond.snr)
            hyp = rec.transcribe(mixed, frames, task, options).text
            cond.rows.append(Row.scored(uid, cond.snr, row["text"], hyp, voice, speaker))
        if progress:
            progress("eval", i + 1, len(rows))
    for cond in conditions:
        cond.tally()
    return Report(manifest, bundle, task, noise_kind, conditions, options)


def check_comparable(earlier: dict, task: str, noise_kind: str, snrs: list[float | None], path: str) -> None:
    """Refuse an earlier report of another task or noise, or without one of `snrs` (before anything runs)."""
    if (earlier.get("task"), earlier.get("noise")) != (task, noise_kind):
        raise UsageError(f"{path} is a report of task {earlier.get('task')} in {earlier.get('noise')} noise, "
                         f"not {task} in {noise_kind}")
    missing = [snr for snr in snrs if snr not in {c.get("snr") for c in earlier["conditions"]}]
    if missing:
        raise UsageError(f"{path} has no {'clean' if missing[0] is None else f'{missing[0]:g} dB'} condition")


def compare(report: Report, earlier: dict, path: str) -> None:
    """Set each condition's `against` from the same condition (SNR) of `earlier`, an `eval --json` report of
    the same task and noise, on the utterances both scored (the same id must have the same reference)."""
    check_comparable(earlier, report.task, report.noise, [c.snr for c in report.conditions], path)
    by_snr = {c["snr"]: {r["id"]: r for r in c["rows"]} for c in earlier["conditions"]}
    for cond in report.conditions:
        before = by_snr[cond.snr]
        shared = [r for r in cond.rows if r.id in before]
        if not shared:
            raise UsageError(f"{path} scored none of these utterances")
        for r in shared:
            if before[r.id]["reference"] != r.reference:
                raise UsageError(f"{path}: utterance {r.id} has another reference there ({before[r.id]['reference']!r})")
        cond.against = Comparison.paired(path, np.array([r.errors for r in shared]),
                                         np.array([before[r.id]["errors"] for r in shared]),
                                         np.array([r.words for r in shared]))


def render_text(report: Report) -> str:
    """The report as `smop-edge eval` prints it: a line per condition (WER, error kinds, utterances,
    misses of the face finder), then its per-voice and per-speaker tallies and the per-speaker mean."""
    lines = []
    for cond in report.conditions:
        label = "clean" if cond.snr is None else f"{cond.snr:g} dB {report.noise}"
        missed = sum(r.no_face for r in cond.rows)
        lines.append(f"{report.task} {label}: WER {100 * cond.wer:.2f} % ({cond.errors} errors / {cond.words} words: "
                     f"{_error_kinds(vars(cond))}; {len(cond.rows)} utterances"
                     + (f", {missed} without a face found" if missed else "") + ")")
        if len(cond.voices) > 1:
            lines += [_tally_line(voice, v) for voice, v in cond.voices.items()]
        lines += [_tally_line(f"speaker {speaker}", v) for speaker, v in cond.speakers.items()
                  if speaker not in cond.voices]  # speakers heard in several voices
        if len(cond.speakers) > 1 and cond.speaker_wer is not None:
            lines.append(f"  per speaker: WER {100 * cond.speaker_wer:.1f} % (the mean of the "
                         f"{len(cond.speakers_in_mean)} speakers with {MIN_SPEAKER_WORDS} words or more, "
                         "each weighing the same)")
        if (c := cond.against) is not None:
            verdict = "within" if c.low <= 0 <= c.high else "beyond"
            lines.append(f"  against {c.against}: {c.difference:+.2f} points (95 % interval {c.low:+.2f} .. "
                         f"{c.high:+.2f}, paired bootstrap over {c.utterances} utterances: {verdict} the set's noise)")
    return "\n".join(lines)


def _tally_line(label: str, tally: dict) -> str:
    """An indented 'label: WER x % (errors / words: kinds)' line under a condition's total."""
    return f"  {label}: WER {100 * tally['wer']:.1f} % ({tally['errors']} / {tally['words']}: {_error_kinds(tally)})"


def _error_kinds(tally: dict) -> str:
    """'S sub, D del, I ins' of an eval tally."""
    return f"{tally['substitutions']} sub, {tally['deletions']} del, {tally['insertions']} ins"

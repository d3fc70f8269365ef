"""The LLM input layout: `[BOS] <audio> A.. </audio> <video> V.. </video> prompt`, per task.

Shared by the torch reference and the runtime so that both assemble prefixes identically.
ASR omits the video block, VSR the audio block.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UnsuitableInputError, UsageError
from .tokenizer import TextTokenizer

TASK_MODALITIES = {"asr": ("audio",), "vsr": ("video",), "avsr": ("audio", "video")}


@dataclass(frozen=True)
class SpecialIds:
    """Token ids of the special tokens a prefix and the decoder loop need."""

    bos: int
    eos: int
    pad: int
    audio_start: int
    audio_end: int
    video_start: int
    video_end: int

    @classmethod
    def from_tokenizer(cls, tok: TextTokenizer, bos: str, eos: str, added: list[str]) -> "SpecialIds":
        pad, a0, a1, v0, v1 = (tok.token_id(t) for t in added)
        return cls(tok.token_id(bos), tok.token_id(eos), pad, a0, a1, v0, v1)


@dataclass(frozen=True)
class Segment:
    """Either fixed token ids (`ids`) or a slot for one modality's projected tokens (`modality`)."""

    ids: tuple[int, ...] = ()
    modality: str | None = None


def prefix_segments(task: str, ids: SpecialIds, prompt_ids: list[int]) -> list[Segment]:
    """The ordered pieces of the decoder's input for `task` (concatenate them; never scatter)."""
    if task not in TASK_MODALITIES:
        raise UsageError(f"unknown task {task!r} (choose from {', '.join(TASK_MODALITIES)})")
    segs: list[Segment] = []
    pending = [ids.bos]
    for modality in TASK_MODALITIES[task]:
        start, end = ((ids.audio_start, ids.audio_end) if modality == "audio"
                      else (ids.video_start, ids.video_end))
        segs.append(Segment(tuple(pending + [start])))
        segs.append(Segment(modality=modality))
        pending = [end]
    segs.append(Segment(tuple(pending + list(prompt_ids))))
    return segs


def pick_task(supported: list[str], has_audio: bool, has_video: bool, task: str | None = None) -> str:
    """The task to run: the requested one if the model supports it and the input can feed it, else
    (task None) AVSR, then ASR, then VSR among those the model supports and the input allows."""
    available = {"audio": has_audio, "video": has_video}
    if task is not None:
        if task not in TASK_MODALITIES:
            raise UsageError(f"unknown task {task!r} (choose from {', '.join(TASK_MODALITIES)})")
        if task not in supported:
            raise UnsuitableInputError(f"the model supports {', '.join(supported)}, not {task}")
        lacking = [m for m in TASK_MODALITIES[task] if not available[m]]
        if lacking:
            raise UnsuitableInputError(f"task {task} needs {' and '.join(lacking)}, which the input lacks")
        return task
    for candidate in ("avsr", "asr", "vsr"):
        if candidate in supported and all(available[m] for m in TASK_MODALITIES[candidate]):
            return candidate
    raise UnsuitableInputError(f"the model supports {', '.join(supported)}, which the input "
                               f"(audio: {'yes' if has_audio else 'no'}, video: {'yes' if has_video else 'no'}) "
                               "cannot feed")

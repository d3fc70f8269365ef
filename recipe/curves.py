"""Training curves of a run: the losses and the held-out WER per task against the step, as a PNG."""

from __future__ import annotations

import json
from pathlib import Path

LOSSES = {"ce": "cross-entropy", "ctc": "CTC (aux)", "frame": "framewise words (aux)",
          "video_frame": "framewise lip words (aux)", "lb": "load balancing"}


def plot(log: str | Path, out: str | Path) -> Path:
    """Draw `train_log.jsonl` (`log`) into `out` (PNG): losses on the left, dev WER on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in Path(log).read_text().splitlines() if line.strip()]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in LOSSES.items():
        points = [(r["step"], r[key]) for r in rows if key in r]
        if points:
            left.plot(*zip(*points), label=label)
    left.set(xlabel="step", ylabel="loss (mean over the logging window)", title="training losses", ylim=(0, 6))
    left.legend()
    dev = [r for r in rows if "dev_wer" in r]
    for task in sorted({t for r in dev for t in r["dev_wer"]}):
        points = [(r["step"], 100 * r["dev_wer"][task]) for r in dev if task in r["dev_wer"]]
        right.plot(*zip(*points), marker="o", label=task)
    right.set(xlabel="step", ylabel="WER %", title="held-out WER (clean, greedy)", ylim=(0, 105))
    if dev:
        right.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return Path(out)

"""Batch transcription of an archive: the inputs expanded to jobs, one output per job written atomically (a
rerun skips what is done), the work spread over a local pool of worker processes or a Ray cluster (Ray
Data, actors holding the recognizer), progress with files/s, hours of media and ETA, and a summary in
which failures are listed, never fatal. Both engines run `transcribe_media`, as `smop-edge transcribe`."""

from __future__ import annotations

import csv
import glob
import json
import logging
import os
import sys
import time
import warnings
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from smop_edge.runtime.decoding import DecodingOptions
from smop_edge.runtime.errors import InputError, SmopEdgeError, UsageError
from smop_edge.runtime.recognizer import Recognizer

from .formats import render

MEDIA_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts",
                  ".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac"}
MANIFEST_SUFFIXES = {".jsonl", ".csv"}
SUMMARY = "batch-summary.json"
GIB_PER_WORKER = 1.2  # a recognizer on the demo bundle holding the longest file stays under 1.1 GB
WORKER_DIED = "the worker process died (killed, or out of memory) twice on this file"


@dataclass
class Job:
    """One media file and the name its outputs take under `--out` (its stem: `name.json`, `name.srt`)."""

    source: Path
    name: str
    seconds: float = 0.0  # the container's duration; 0 when it cannot be read (the worker then says why)
    stamp: dict = field(default_factory=dict)  # the file as it was when queued (see `stamp`)


@dataclass
class Recognition:
    """What the engine needs to open a recognizer in a worker, and how to use it (picklable). `digest`
    pins the bundle, so that a worker (a Ray node) with another bundle at the same path refuses to start."""

    bundle: str | None
    digest: str
    backend: str = "auto"
    device: str = "CPU"
    threads: int = 1
    precision: str = "f32"
    task: str | None = None
    options: DecodingOptions = field(default_factory=DecodingOptions)
    exact: bool = True  # False: int8 activations beside int8/int4 weights

    def open(self) -> Recognizer:
        """This worker's recognizer."""
        from smop_edge.runtime import load_recognizer

        return load_recognizer(self.bundle, backend=self.backend, device=self.device, threads=self.threads,
                               precision=self.precision, digest=self.digest, exact=self.exact)

    def settings(self) -> dict:
        """Everything besides the file that decides its transcript (part of each output's stamp)."""
        inexact = {} if self.exact else {"int8_activations": True}  # stamps made before the flag stay valid
        return {"bundle": self.digest, "backend": self.backend, "precision": self.precision, "task": self.task,
                "decoding": asdict(self.options), **inexact}


# ---- inputs -------------------------------------------------------------------------------------------
def collect(inputs: Iterable[str]) -> list[Job]:
    """Jobs for folders (searched recursively for media), globs, manifests (JSONL with a `path` per line, or
    CSV with a `path` column; paths relative to the manifest) and single files. Names keep the folder
    structure below each argument, so reruns name every file the same; a file listed twice is done once."""
    found: list[tuple[Path, str]] = []
    for arg in inputs:
        path = Path(arg)
        if path.is_dir():
            found += [(p, str(Path(path.resolve().name) / p.relative_to(path))) for p in _media_under(path)]
        elif path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
            found += _manifest(path)
        elif path.is_file():
            found.append((path, path.name))
        elif glob.has_magic(arg):
            root = _literal_prefix(arg)
            matches = sorted(m for m in map(Path, glob.glob(arg, recursive=True)) if _is_media(m))
            if not matches:
                raise UsageError(f"{arg}: no media file matches")
            found += [(m, str(m.relative_to(root))) for m in matches]
        else:
            raise InputError(f"not found: {arg}")
    jobs, seen = [], set()
    for source, name in found:
        key = source.resolve()
        if key not in seen:
            seen.add(key)
            jobs.append(Job(source, name))
    if not jobs:
        raise UsageError("no media files in the inputs (searched for " + ", ".join(sorted(MEDIA_SUFFIXES)) + ")")
    _name_outputs(jobs)
    return jobs


def _is_media(path: Path) -> bool:
    """A file whose extension is a media format's (what folders and globs are searched for)."""
    return path.is_file() and path.suffix.lower() in MEDIA_SUFFIXES


def _media_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if _is_media(p))


def _literal_prefix(pattern: str) -> Path:
    """The folder a glob's matches are named relative to: its leading parts without wildcards."""
    parts = []
    for part in Path(pattern).parts[:-1]:
        if glob.has_magic(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def _manifest(path: Path) -> list[tuple[Path, str]]:
    """(file, name) for each entry; a relative path is relative to the manifest and names its outputs."""
    try:
        if path.suffix.lower() == ".csv":
            with path.open(newline="") as f:
                rows = list(csv.DictReader(f))
            if rows and "path" not in rows[0]:
                raise InputError(f"{path}: a CSV manifest needs a 'path' column (it has {', '.join(rows[0])})")
            entries = [row["path"] for row in rows]
        else:
            entries = []
            for i, line in enumerate(path.read_text().splitlines(), 1):
                if line.strip():
                    entry = json.loads(line)
                    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
                        raise InputError(f"{path}:{i}: each line needs a \"path\" string")
                    entries.append(entry["path"])
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: not a readable manifest ({exc})") from None
    out = []
    for entry in entries:
        listed = Path(entry)
        inside = [part for part in Path(os.path.normpath(entry)).parts if part not in ("..", "/")]
        out.append((listed if listed.is_absolute() else path.parent / listed,
                    listed.name if listed.is_absolute() else str(Path(*inside))))  # never above --out
    return out


def _name_outputs(jobs: list[Job]) -> None:
    """Output stems: the name without its extension (`talk.mp4` -> `talk`), unless two inputs would share
    it (`talk.mp4`, `talk.wav`): those keep their extension (`talk.mp4`, `talk.wav`). Two files that would
    still write one name (the same folder name under two arguments) are a usage error, not an overwrite."""
    stems = Counter(str(Path(j.name).with_suffix("")) for j in jobs)
    for job in jobs:
        stem = str(Path(job.name).with_suffix(""))
        job.name = stem if stems[stem] == 1 else job.name
    owner: dict[str, Path] = {str(Path(SUMMARY).with_suffix("")): Path(SUMMARY)}
    for job in jobs:
        if job.name in owner:
            raise UsageError(f"{owner[job.name]} and {job.source} would both be written as {job.name}.json: "
                             "give their common folder (or a manifest) instead")
        owner[job.name] = job.source


def measure(jobs: list[Job]) -> None:
    """Each job's duration from its container's header (for the ETA and the hours done)."""
    from smop_edge.runtime import media

    for job in jobs:
        try:
            job.seconds = media.probe(job.source).duration
        except SmopEdgeError:
            job.seconds = 0.0


# ---- outputs ------------------------------------------------------------------------------------------
def stamp(source: Path, recognition: Recognition) -> dict:
    """What makes an output current: the source's size and modification time (taken before it is read, so
    a file that changes meanwhile is done again next time) and the recognition settings."""
    try:
        st = source.stat()
    except OSError:
        return {}  # the worker reports the file's problem
    return {"source_size": st.st_size, "source_mtime_ns": st.st_mtime_ns, **recognition.settings()}


def saved_result(job: Job, out: Path) -> dict | None:
    """The job's earlier result when its JSON carries the current stamp, else None."""
    try:
        saved = json.loads((out / f"{job.name}.json").read_text())
    except (OSError, ValueError):
        return None
    return saved if job.stamp and isinstance(saved, dict) and saved.get("batch") == job.stamp else None


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path`: a reader (or a rerun after
    a crash) sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_formats(job: Job, out: Path, result: dict, formats: list[str], missing_only: bool = False) -> None:
    """The job's subtitle / text files (with `missing_only`, those not written yet: a rerun that asks
    for another format gets it from the saved result without transcribing again)."""
    from smop_edge.runtime.transcribe import FileTranscript

    transcript = FileTranscript.from_dict({k: v for k, v in result.items() if k != "batch"})
    for fmt in formats:
        path = out / f"{job.name}.{fmt}"
        if not (missing_only and path.exists()):
            write_atomic(path, render(transcript, fmt) + "\n")


def save(job: Job, out: Path, result: dict, formats: list[str]) -> None:
    """The job's subtitle / text files first, its JSON last: the JSON is what marks the job done."""
    write_formats(job, out, result, formats)
    write_atomic(out / f"{job.name}.json", json.dumps(dict(result, batch=job.stamp), indent=2) + "\n")


def remove_stale_temporaries(out: Path) -> None:
    """Temporary files a killed run left behind (never read: the rename had not happened)."""
    for tmp in out.rglob(".*.tmp"):
        tmp.unlink(missing_ok=True)


# ---- the work, in a worker ------------------------------------------------------------------------------
def transcribe_one(rec: Recognizer, source: str, recognition: Recognition) -> dict:
    """One file: `{"ok": True, "result": ...}` or `{"ok": False, "exit_code": ..., "error": ...}`; a failure
    is an outcome, never an exception, so that no file stops the batch."""
    from smop_edge.runtime.transcribe import transcribe_media

    try:
        result = transcribe_media(rec, source, recognition.task, False, recognition.options)
        return {"ok": True, "result": result.to_dict()}
    except SmopEdgeError as exc:
        return {"ok": False, "exit_code": exc.exit_code, "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - reported per file, as the CLI reports it for one file
        return {"ok": False, "exit_code": 1, "error": f"internal error: {type(exc).__name__}: {exc}"}


_worker_rec = None  # the recognizer of a pool worker process
_worker_recognition: Recognition | None = None


def _pool_init(recognition: Recognition) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers
    global _worker_rec, _worker_recognition
    _worker_rec, _worker_recognition = recognition.open(), recognition


def _pool_run(source: str) -> dict:
    return transcribe_one(_worker_rec, source, _worker_recognition)


Outcome = Callable[[Job, dict], None]


def run_pool(jobs: list[Job], recognition: Recognition, workers: int, on_outcome: Outcome,
             warn: Callable[[str], None]) -> int:
    """Local engine: `workers` processes, each with its own recognizer and at most one file (so every file
    in flight is being read). A worker that dies (killed, out of memory) breaks the pool and the files in
    flight with it: the pool is started again and those files go to the back of the queue, to be retried
    beside other files; a file in flight at two such deaths is a failure. Returns how often the pool broke."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool
    from multiprocessing import get_context

    pending, tries, breaks = deque(jobs), Counter(), 0

    def retry_or_fail(job: Job) -> None:
        tries[job.name] += 1
        if tries[job.name] < 2:
            pending.append(job)
        else:
            on_outcome(job, {"ok": False, "exit_code": 1, "error": WORKER_DIED})

    while pending:
        pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_pool_init,
                                   initargs=(recognition,))
        inflight, broken = {}, False
        try:
            while (pending and not broken) or inflight:
                while pending and not broken and len(inflight) < workers:
                    job = pending.popleft()
                    try:
                        inflight[pool.submit(_pool_run, str(job.source))] = job
                    except BrokenProcessPool:  # a worker died since the last look
                        pending.appendleft(job)
                        broken = True
                if not inflight:
                    break
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for future in done:
                    job = inflight.pop(future)
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:  # then every future in flight fails the same way
                        broken = True
                        retry_or_fail(job)
                        continue
                    on_outcome(job, outcome)
        except BaseException:  # Ctrl-C: stop the workers now rather than after the files they hold
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
        if broken:
            breaks += 1
            warn(f"a worker process died; the files it had in flight go round again ({len(pending)} left)")
    return breaks


class _RayTranscriber:
    """A Ray Data actor: one recognizer, one file per batch."""

    def __init__(self, recognition: Recognition) -> None:
        self.rec, self.recognition = recognition.open(), recognition

    def __call__(self, batch: dict) -> dict:
        outcomes = [json.dumps(transcribe_one(self.rec, str(s), self.recognition)) for s in batch["source"]]
        return {"index": batch["index"], "outcome": outcomes}


def run_ray(jobs: list[Job], recognition: Recognition, workers: int | None, address: str | None,
            on_outcome: Outcome) -> int:
    """Ray engine: the jobs as a Ray Data dataset mapped by `workers` actors (default: the cluster's CPUs /
    threads per actor, no more than files); outcomes come back to this process, which writes every output
    (so only it needs the output folder; each node needs the media and the bundle at the same paths). An
    actor that dies is restarted twice at most and its file retried once; a file whose result never comes
    back is a failure, not a hang. Returns the number of actors."""
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray: pip install 'smop-edge[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # our progress line, not Ray Data's
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.max_errored_blocks = len(jobs)  # a block (one file) that fails for good is skipped, and named below
    cpus = int(ray.cluster_resources().get("CPU", 1))
    workers = min(workers or max(1, cpus // recognition.threads), len(jobs))
    dataset = ray.data.from_items([{"index": i, "source": str(j.source.resolve())} for i, j in enumerate(jobs)],
                                  override_num_blocks=len(jobs))
    with warnings.catch_warnings():  # Ray 2.60 names no parameter for restarts; its remote args still work
        warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated")
        mapped = dataset.map_batches(_RayTranscriber, fn_constructor_kwargs={"recognition": recognition},
                                     batch_size=1, concurrency=workers, num_cpus=recognition.threads,
                                     max_restarts=2, max_task_retries=1)
    returned = set()
    for row in mapped.iter_rows():
        returned.add(int(row["index"]))
        on_outcome(jobs[int(row["index"])], json.loads(row["outcome"]))
    for i in sorted(set(range(len(jobs))) - returned):
        on_outcome(jobs[i], {"ok": False, "exit_code": 1, "error": "its Ray actor died (restarts and retry spent)"})
    return workers


# ---- choosing the pool's size ----------------------------------------------------------------------------
def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def available_gib() -> float:
    """Memory that can be used without swapping: Linux's MemAvailable, within a cgroup's limit when the
    process runs in one (containers); elsewhere, assume plenty."""
    free = float("inf")
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) / 2**20
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            free = min(free, (int(limit) - used) / 2**30)
    except (OSError, ValueError):
        pass
    return free


def pool_shape(files: int, workers: int | None, threads: int | None) -> tuple[int, int]:
    """(workers, threads per worker): by default one single-threaded worker per core (workers x threads =
    cores: separate files scale better than threads within one), no more workers than files or than
    memory holds at GIB_PER_WORKER each."""
    cores = available_cores()
    if workers is None:
        workers = cores // threads if threads else cores
        workers = max(1, int(min(workers, files, available_gib() / GIB_PER_WORKER)))
    return workers, threads or max(1, cores // workers)


# ---- progress and summary -------------------------------------------------------------------------------
@dataclass
class Tally:
    """Counts for the progress line and the summary."""

    total: int
    seconds_total: float
    started: float = field(default_factory=time.perf_counter)
    ok: list[str] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    skipped: int = 0
    seconds_done: float = 0.0  # media seconds of the files finished in this run (ok or failed)

    @property
    def finished(self) -> int:
        return len(self.ok) + len(self.failed)

    def line(self) -> str:
        """`batch: 12/36 files  0.85 files/s  0:04:10 of media  ETA 0:00:27` (the ETA by media seconds)."""
        wall = time.perf_counter() - self.started
        rate = self.finished / wall if wall > 0 else 0.0
        left = self.seconds_total - self.seconds_done
        speed = self.seconds_done / wall if wall > 0 else 0.0  # media seconds per second
        eta = left / speed if speed > 0 else (self.total - self.finished) / rate if rate > 0 else None
        failed = f", {len(self.failed)} failed" if self.failed else ""
        return (f"batch: {self.finished}/{self.total} files{failed}  {rate:.2f} files/s  "
                f"{_clock(self.seconds_done)} of media  ETA {_clock(eta)}")

    def summary(self) -> dict:
        """This run's counts and throughput, for batch-summary.json."""
        wall = time.perf_counter() - self.started
        return {"ok": len(self.ok), "failed": self.failed, "skipped_as_done": self.skipped,
                "media_hours": round(self.seconds_done / 3600, 4), "wall_seconds": round(wall, 2),
                "files_per_second": round(self.finished / wall, 3) if wall > 0 else None,
                "media_hours_per_hour": round(self.seconds_done / wall, 2) if wall > 0 else None}


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--:--"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class Progress:
    """The progress line on stderr: rewritten in place on a terminal, else a line every 10 s (for logs)."""

    def __init__(self, tally: Tally, enabled: bool) -> None:
        self.tally, self.enabled, self.tty = tally, enabled, sys.stderr.isatty()
        self.last, self.shown = time.perf_counter(), ""

    def warn(self, message: str) -> None:
        """A warning on a line of its own (the progress line, on a terminal, drawn again below it)."""
        sys.stderr.write(("\r\x1b[K" if self.tty and self.enabled else "") + f"smop-edge: warning: {message}\n")
        self.update()

    def update(self, final: bool = False) -> None:
        """Show the line now (on a terminal) or when due (in a log); `final` ends it."""
        if not self.enabled:
            return
        now, line = time.perf_counter(), self.tally.line()
        if self.tty:
            sys.stderr.write("\r" + line + ("\n" if final else "\x1b[K"))
        elif (final and line != self.shown) or now - self.last >= 10:
            sys.stderr.write(line + "\n")
            self.last, self.shown = now, line
        sys.stderr.flush()


def run_batch(inputs: list[str], out: Path, recognition: Recognition, formats: list[str],
              workers: int | None = None, threads: int | None = None, use_ray: bool = False,
              ray_address: str | None = None, force: bool = False, show_progress: bool = True) -> dict:
    """Transcribe every input not already done into `out`; returns the summary (also saved as
    `out/batch-summary.json`). A done file gets only the `formats` it lacks, from its saved result.
    Locally, `workers` x `threads` defaults to the cores (`pool_shape`); on Ray, `threads` (1) CPUs per
    actor and as many actors as the cluster has CPUs. Ctrl-C stops at once, keeping every file already
    written; a rerun goes on from there."""
    jobs = collect(inputs)
    if out.is_dir():
        remove_stale_temporaries(out)
    todo = []
    for job in jobs:
        job.stamp = stamp(job.source, recognition)
        saved = None if force else saved_result(job, out)
        if saved is None:
            todo.append(job)
        else:
            write_formats(job, out, saved, formats, missing_only=True)
    measure(todo)
    tally = Tally(len(todo), sum(j.seconds for j in todo), skipped=len(jobs) - len(todo))
    progress = Progress(tally, show_progress)

    def on_outcome(job: Job, outcome: dict) -> None:
        tally.seconds_done += job.seconds
        if outcome["ok"]:
            try:
                save(job, out, outcome["result"], formats)
                tally.ok.append(job.name)
            except OSError as exc:  # disk full, a name too long: this file's failure, not the batch's
                outcome = {"ok": False, "exit_code": 1, "error": f"cannot write its outputs: {exc}"}
        if not outcome["ok"]:
            tally.failed.append({"file": str(job.source), "exit_code": outcome["exit_code"],
                                 "error": outcome["error"]})
        progress.update()

    engine: dict = {"engine": "ray" if use_ray else "local"}
    interrupted = False
    try:
        if todo and use_ray:
            recognition = replace(recognition, threads=threads or 1)
            engine["workers"] = run_ray(todo, recognition, workers, ray_address, on_outcome)
        elif todo:
            workers, threads = pool_shape(len(todo), workers, threads)
            recognition = replace(recognition, threads=threads)
            engine["workers"] = workers
            engine["worker_deaths"] = run_pool(todo, recognition, workers, on_outcome, progress.warn)
        engine["threads_per_worker"] = recognition.threads
    except KeyboardInterrupt:
        interrupted = True
    progress.update(final=True)
    summary = {**engine, "files": len(jobs), **tally.summary(), "interrupted": interrupted,
               "settings": recognition.settings()}
    write_atomic(out / SUMMARY, json.dumps(summary, indent=2) + "\n")
    if interrupted:
        raise KeyboardInterrupt
    return summary

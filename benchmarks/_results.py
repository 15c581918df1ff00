"""Shared pieces of the results scripts (docs/protocols.md, 'Targets'): jobs, the subprocess runner, JSON.

A *job* is one training run (one config, one seed) followed by its evaluation, each step a
``python -m gmmgan ...`` command in its own process, so the recorded commands are exactly what a
user would type. Jobs run on *slots*: CPU slots (one thread each) for the 2-D table, GPU slots
(``CUDA_VISIBLE_DEVICES`` per process) for the image tables. Every finished job writes one JSON
file, ``OUT/json/<table>/<job>.json``, as soon as it ends, so a run cut short keeps what it
finished and a second invocation skips the jobs already done (``--force`` redoes them).
``python -m benchmarks.results_report OUT`` renders all of them as markdown tables.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from benchmarks._common import write_json

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
RESULT_VERSION = 1


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def parse_seeds(text: str) -> list[int]:
    """'0-9' -> [0..9]; '0,3,5' -> [0, 3, 5]; '2' -> [2]."""
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        m = re.fullmatch(r"(\d+)-(\d+)", part)
        if m:
            a, b = int(m.group(1)), int(m.group(2))
            if b < a:
                raise ValueError(f"seed range {part!r} runs backwards; write it as {b}-{a}.")
            seeds += range(a, b + 1)
        elif part.isdigit():
            seeds.append(int(part))
        else:
            raise ValueError(f"--seeds takes non-negative integers and ranges such as 0-9 or 0,2,5; got {part!r}.")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds must name at least one seed, each once; got {text!r}.")
    return seeds


def protocol_kimg(config_path: Path) -> float:
    """schedule.total_kimg of a config file as written (the protocol's budget)."""
    import yaml

    d = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    return float((d.get("schedule") or {}).get("total_kimg", 100.0))


def display_command(argv: list[str]) -> str:
    """A command as a user would type it: ``python -m gmmgan`` -> ``gmmgan``, paths relative to the repo."""
    if argv[:3] == [sys.executable, "-m", "gmmgan"]:
        argv = ["gmmgan", *argv[3:]]
    elif argv and argv[0] == sys.executable:
        argv = ["python", *argv[1:]]
    root = str(ROOT) + os.sep
    return shlex.join(a.replace(root, "") for a in argv)


def invocation() -> str:
    """The command line of this script (``python -m benchmarks.NAME ...``), as typed from the repository root."""
    script = Path(os.path.relpath(Path(sys.argv[0]).resolve(), ROOT)).with_suffix("")
    return "PYTHONPATH=src python -m " + shlex.join([".".join(script.parts), *sys.argv[1:]])


@dataclass
class Job:
    """One training run and its evaluation.

    name : unique within the table, e.g. 'ring_fitted_gmm-s3'.
    train_argv : the ``gmmgan train`` argument list (after ``gmmgan``), without ``--out``.
    evals : for the finished run folder, the evaluation commands (full argv lists), in order.
    collect : reads the metrics of the finished run folder into a flat dict.
    info : fields copied into the result JSON (config, seed, overrides, budget, ...).
    """

    table: str
    name: str
    train_argv: list[str]
    evals: Callable[[Path], list[list[str]]]
    collect: Callable[[Path], dict]
    info: dict = field(default_factory=dict)


def result_path(out: Path, job: Job) -> Path:
    return out / "json" / job.table / f"{job.name}.json"


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-n:]
    except OSError:
        return ""


def _run_step(argv: list[str], env: dict, log: Path, timeout: float | None) -> tuple[str, float]:
    """Run one command, output to ``log``; ('ok' | 'failed' | 'timeout', seconds)."""
    t0 = time.time()
    with open(log, "w", encoding="utf-8") as f:
        f.write("$ " + display_command(argv) + "\n")
        f.flush()
        try:
            rc = subprocess.run(argv, check=False, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:  # the child is killed by subprocess.run
            return "timeout", time.time() - t0
    return ("ok" if rc == 0 else "failed"), time.time() - t0


def train_command(job: Job, work: Path) -> list[str]:
    return [sys.executable, "-m", "gmmgan", "train", *job.train_argv, "--out", str(work), "-q"]


def dry_run(jobs: list[Job], runs_dir: Path) -> None:
    """Print every job's commands (evaluation commands with the run folder as RUN) without running them."""
    for job in jobs:
        print(f"# {job.table}/{job.name}")
        print(display_command(train_command(job, runs_dir / job.table / job.name)))
        for argv in job.evals(Path("RUN")):
            print(display_command(argv))


# Run-folder files small enough to keep beside the JSON (checkpoints and snapshots stay in the runs folder).
SMALL_FILES = ("config.yaml", "log.jsonl", "metrics.json", "eval.json", "gmm_real_clustering.json", "final.png")


def keep_small_files(work: Path, dest: Path) -> None:
    """Copy the step logs and the small files of the run folder under ``work`` to ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in [*work.glob("*.log"), *(f for name in SMALL_FILES for f in work.glob(f"*/{name}"))]:
        shutil.copy2(f, dest / f.name)


def _median_rate(log: Path) -> float | None:
    """Median images/s of the training log's lines (what one run's throughput was), or None."""
    import statistics

    try:
        rates = [json.loads(line)["images_per_s"] for line in log.read_text().splitlines() if line.strip()]
    except (OSError, ValueError, KeyError):
        return None
    return statistics.median(rates) if rates else None


def run_job(job: Job, out: Path, env: dict, slot: str, timeout: float | None, runs_dir: Path | None = None) -> dict:
    """Train, evaluate, collect; write and return the result JSON (whatever the outcome).

    The run folder goes under ``runs_dir`` (default ``out/runs``); with another ``runs_dir``, the
    step logs and small files of the run are copied to ``out/files/<table>/<job>/``.
    """
    work = (runs_dir or out / "runs") / job.table / job.name
    if work.exists():
        shutil.rmtree(work)  # a previous, unfinished attempt of this very job
    work.mkdir(parents=True)
    train = train_command(job, work)
    result = {"version": RESULT_VERSION, "table": job.table, "job": job.name, **job.info, "slot": slot,
              "started": utc_now(), "commands": [display_command(train)], "wall_s": {}}
    status, result["wall_s"]["train"] = _run_step(train, env, work / "train.log", timeout)
    log = work / "train.log"
    run_dirs = [p for p in work.iterdir() if p.is_dir()]
    if status == "ok" and len(run_dirs) == 1:
        run_dir = run_dirs[0]
        result["run_dir"] = str(run_dir)
        result["train_images_per_s"] = _median_rate(run_dir / "log.jsonl")
        for i, argv in enumerate(job.evals(run_dir)):
            result["commands"].append(display_command(argv))
            log = work / f"eval{i}.log"
            status, result["wall_s"][f"eval{i}"] = _run_step(argv, env, log, timeout)
            if status != "ok":
                break
        if status == "ok":
            try:
                result["metrics"] = job.collect(run_dir)
            except (OSError, KeyError, ValueError) as e:
                status, result["error"] = "failed", f"collecting the metrics: {e!r}"
    elif status == "ok":
        status = "failed"
        result["error"] = f"expected one run folder under {work}, found {len(run_dirs)}"
    if status != "ok" and "error" not in result:
        result["error"] = f"{status}; last lines of {log.name}:\n{_tail(log)}"
    if runs_dir is not None:
        keep_small_files(work, out / "files" / job.table / job.name)
    result["status"] = status
    result["wall_s"]["total"] = sum(result["wall_s"].values())
    result["finished"] = utc_now()
    write_json(result_path(out, job), result)
    return result


def run_all(jobs: list[Job], out: Path, slots: list[tuple[str, dict]], *, timeout: float | None = None,
            force: bool = False, runs_dir: Path | None = None, log: Callable[[str], None] = print) -> list[dict]:
    """Run ``jobs`` on ``slots`` ((name, environment) pairs), at most one job per slot at a time.

    Jobs whose result JSON already says 'ok' are skipped unless ``force``. Returns the results of
    the jobs run now, in the order they finished.
    """
    todo = []
    for job in jobs:
        p = result_path(out, job)
        if not force and p.is_file() and json.loads(p.read_text()).get("status") == "ok":
            log(f"skip {job.table}/{job.name}: done already ({p}; --force redoes it)")
        else:
            todo.append(job)
    free: queue.Queue = queue.Queue()
    for s in slots:
        free.put(s)
    done: list[dict] = []

    def one(job: Job) -> dict:
        name, env = free.get()
        try:
            log(f"start {job.table}/{job.name} on {name}")
            r = run_job(job, out, env, name, timeout, runs_dir)
            log(f"{r['status']:7s} {job.table}/{job.name} in {r['wall_s']['total']:.0f} s: {r.get('metrics', r.get('error', ''))}"
                if r["status"] == "ok" else f"{r['status']} {job.table}/{job.name}: {r['error']}")
            done.append(r)
            return r
        finally:
            free.put((name, env))

    with ThreadPoolExecutor(max_workers=max(1, len(slots))) as pool:
        list(pool.map(one, todo))
    return done


def base_env(threads: int) -> dict:
    """The environment of every job: gmmgan importable from src/, ``threads`` CPU threads."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[k] = str(threads)
    return env


def write_invocation(out: Path, table: str, record: dict) -> None:
    """Append this script invocation (command, machine, dates, wall time) to OUT/json/<table>/_invocations.json."""
    path = out / "json" / table / "_invocations.json"
    prev = json.loads(path.read_text()) if path.is_file() else []
    write_json(path, [*prev, record])


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def add_run_options(p, unit: str, set_example: str = "") -> None:
    """The options every results script shares: overrides, time limit, run folders, dry run, redo."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra gmmgan config override for every run (repeatable)" + set_example)
    p.add_argument("--timeout", type=float, default=None, help=f"seconds per {unit} before it is killed (default: none)")
    p.add_argument("--runs-dir", default=None, help="where the run folders (checkpoints, snapshots) go; default "
                   "OUT/runs. Another folder keeps OUT small: only JSON, logs and small files are copied there")
    p.add_argument("--dry-run", action="store_true", help="print the commands of every run, run nothing")
    p.add_argument("--force", action="store_true", help=f"redo {unit}s whose result JSON exists")

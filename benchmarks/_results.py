"""Shared pieces of the results scripts (docs/protocols.md, 'Targets'): jobs, sweeps, the subprocess runner, JSON.

A *job* is one (config, seed) of a table: its training run and its evaluation. The jobs of one
config (a table's row) that are still to do are trained together as one *seed sweep*, a single
``python -m gmmgan train --config C --seeds 0-9 ...`` process (one stacked model, one run folder
per seed, see ``gmmgan train --help``); then each seed's evaluation commands (``gmmgan eval ...``)
run on its folder inside the sweep folder, one process each. With ``--no-sweep`` every job trains
in its own process instead (``gmmgan train ... seed=S``). Either way every step is a command
exactly as a user would type it, recorded in the result JSON.

Sweeps (or, with ``--no-sweep``, jobs) run on *slots*: CPU slots (one thread each) for the 2-D
table, GPU slots (``CUDA_VISIBLE_DEVICES`` per process) for the image tables; a slot runs one whole
sweep, training and evaluations, at a time. Every job writes one JSON file,
``OUT/json/<table>/<job>.json``, as soon as its seed is evaluated, so a run cut short keeps what it
finished and a second invocation skips the jobs already done (``--force`` redoes them): its sweeps
train only the seeds still to do. ``python -m benchmarks.results_report OUT`` renders all of them as
markdown tables.
"""

from __future__ import annotations

import json
import os
import queue
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
    """'0-9' -> [0..9]; '0,3,5' -> [0, 3, 5]; '2' -> [2] (gmmgan's own parser, as ``gmmgan train --seeds``)."""
    from gmmgan._seeds import parse_seeds as parse

    return parse(text, "--seeds")


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
    """One (config, seed) of a table: its training, its evaluation and its result JSON.

    name : unique within the table, e.g. 'ring_fitted_gmm-s3'.
    group : the jobs of one group differ only in their seed (e.g. 'ring_fitted_gmm', the row's
        config): a sweep trains several of them together.
    config, seed, overrides : ``gmmgan train --config CONFIG seed=SEED OVERRIDES...`` (the
        overrides without ``seed=`` and without ``--out``).
    evals : for the finished run folder, the evaluation commands (full argv lists), in order.
    collect : reads the metrics of the finished run folder into a flat dict.
    info : fields copied into the result JSON (config, seed, overrides, budget, ...).
    """

    table: str
    name: str
    group: str
    config: Path
    seed: int
    overrides: list[str]
    evals: Callable[[Path], list[list[str]]]
    collect: Callable[[Path], dict]
    info: dict = field(default_factory=dict)


@dataclass
class Sweep:
    """Jobs of one group trained as one seed sweep (``gmmgan train --seeds ...``), in one process."""

    jobs: list[Job]

    @property
    def table(self) -> str:
        return self.jobs[0].table

    @property
    def seeds(self) -> list[int]:
        return [j.seed for j in self.jobs]

    @property
    def name(self) -> str:
        """The folder of the sweep's training under the runs folder: 'ring_fitted_gmm-seeds0-9'."""
        return f"{self.jobs[0].group}-seeds{seeds_text(self.seeds).replace(',', '_')}"


def seeds_text(seeds: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5': the shortest --seeds text for these seeds, in this order."""
    parts: list[list[int]] = []
    for s in seeds:
        if parts and s == parts[-1][-1] + 1:
            parts[-1].append(s)
        else:
            parts.append([s])
    return ",".join(f"{p[0]}-{p[-1]}" if len(p) > 1 else f"{p[0]}" for p in parts)


def make_sweeps(jobs: list[Job], size: int | None = None) -> list[Sweep]:
    """The jobs of each (table, group), in order, as sweeps of at most ``size`` seeds (default: all in one)."""
    groups: dict[tuple[str, str], list[Job]] = {}
    for job in jobs:
        members = groups.setdefault((job.table, job.group), [])
        if members and (job.config, job.overrides) != (members[0].config, members[0].overrides):
            raise ValueError(f"jobs {members[0].name} and {job.name} of group {job.group!r} differ in more than "
                             "their seed; one sweep cannot train both")
        members.append(job)
    sweeps = []
    for members in groups.values():
        step = size or len(members)
        sweeps += [Sweep(members[i:i + step]) for i in range(0, len(members), step)]
    return sweeps


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


def _gmmgan_train(job: Job, seed_args: list[str], work: Path) -> list[str]:
    return [sys.executable, "-m", "gmmgan", "train", "--config", str(job.config), *seed_args, *job.overrides,
            "--out", str(work), "-q"]


def train_command(job: Job, work: Path) -> list[str]:
    """One run: ``gmmgan train --config C seed=S ... --out WORK -q``."""
    return _gmmgan_train(job, [f"seed={job.seed}"], work)


def sweep_command(sweep: Sweep, work: Path) -> list[str]:
    """One sweep: ``gmmgan train --config C --seeds 0-9 ... --out WORK -q``."""
    return _gmmgan_train(sweep.jobs[0], ["--seeds", seeds_text(sweep.seeds)], work)


def dry_run(jobs: list[Job], runs_dir: Path, *, sweep: bool = True, sweep_size: int | None = None) -> None:
    """Print every job's commands without running them: each sweep's training, then each seed's
    evaluation commands with its run folder as SWEEP/seed-NNNN (SWEEP: the folder the sweep makes);
    with ``sweep=False`` each job's training and evaluation, its run folder as RUN."""
    if not sweep:
        for job in jobs:
            print(f"# {job.table}/{job.name}")
            print(display_command(train_command(job, runs_dir / job.table / job.name)))
            for argv in job.evals(Path("RUN")):
                print(display_command(argv))
        return
    for sw in make_sweeps(jobs, sweep_size):
        print(f"# {sw.table}/{sw.name}: {', '.join(j.name for j in sw.jobs)}")
        print(display_command(sweep_command(sw, runs_dir / sw.table / sw.name)))
        for job in sw.jobs:
            for argv in job.evals(Path("SWEEP") / f"seed-{job.seed:04d}"):
                print(display_command(argv))


# Run-folder files small enough to keep beside the JSON (checkpoints and snapshots stay in the runs folder).
SMALL_FILES = ("config.yaml", "log.jsonl", "metrics.json", "eval.json", "gmm_real_clustering.json", "final.png")
SWEEP_FILES = ("config.yaml", "summary.json", "summary.md")  # of a sweep's own folder


def _copy_files(files, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        if f.is_file():
            shutil.copy2(f, dest / f.name)


def keep_small_files(work: Path, dest: Path) -> None:
    """Copy the step logs and the small files of the run folder under ``work`` to ``dest``."""
    _copy_files([*work.glob("*.log"), *(f for name in SMALL_FILES for f in work.glob(f"*/{name}"))], dest)


def _median_rate(log: Path) -> float | None:
    """Median images/s of the training log's lines (what one run's throughput was; in a sweep, per seed), or None."""
    import statistics

    try:
        rates = [json.loads(line)["images_per_s"] for line in log.read_text().splitlines() if line.strip()]
    except (OSError, ValueError, KeyError):
        return None
    return statistics.median(rates) if rates else None


def _new_result(job: Job, slot: str, train: list[str]) -> dict:
    return {"version": RESULT_VERSION, "table": job.table, "job": job.name, **job.info, "slot": slot,
            "started": utc_now(), "commands": [display_command(train)], "wall_s": {}}


def _evaluate(job: Job, run_dir: Path, result: dict, env: dict, timeout: float | None, logs: Path) -> tuple[str, Path | None]:
    """Run the job's evaluation commands on its trained ``run_dir`` (logs ``logs/eval<i>.log``) and
    collect its metrics into ``result``; (status, the last log written or None)."""
    result["run_dir"] = str(run_dir)
    result["train_images_per_s"] = _median_rate(run_dir / "log.jsonl")
    status, log = "ok", None
    for i, argv in enumerate(job.evals(run_dir)):
        result["commands"].append(display_command(argv))
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"eval{i}.log"
        status, result["wall_s"][f"eval{i}"] = _run_step(argv, env, log, timeout)
        if status != "ok":
            return status, log
    try:
        result["metrics"] = job.collect(run_dir)
    except (OSError, KeyError, ValueError) as e:
        status, result["error"] = "failed", f"collecting the metrics: {e!r}"
    return status, log


def _finish(out: Path, job: Job, result: dict, status: str, log: Path | None) -> dict:
    if status != "ok" and "error" not in result:
        result["error"] = f"{status}; last lines of {log.name}:\n{_tail(log)}" if log else status
    result["status"] = status
    result["wall_s"]["total"] = sum(result["wall_s"].values())
    result["finished"] = utc_now()
    write_json(result_path(out, job), result)
    return result


def _fresh(work: Path) -> Path:
    if work.exists():
        shutil.rmtree(work)  # a previous, unfinished attempt of this very job
    work.mkdir(parents=True)
    return work


def run_job(job: Job, out: Path, env: dict, slot: str, timeout: float | None, runs_dir: Path | None = None) -> dict:
    """One process per step (``--no-sweep``): train, evaluate, collect; write and return the result JSON
    (whatever the outcome).

    The run folder goes under ``runs_dir`` (default ``out/runs``); with another ``runs_dir``, the
    step logs and small files of the run are copied to ``out/files/<table>/<job>/``.
    """
    work = _fresh((runs_dir or out / "runs") / job.table / job.name)
    train = train_command(job, work)
    result = _new_result(job, slot, train)
    status, result["wall_s"]["train"] = _run_step(train, env, work / "train.log", timeout)
    log: Path | None = work / "train.log"
    run_dirs = [p for p in work.iterdir() if p.is_dir()]
    if status == "ok" and len(run_dirs) == 1:
        status, eval_log = _evaluate(job, run_dirs[0], result, env, timeout, work)
        log = eval_log or log
    elif status == "ok":
        status = "failed"
        result["error"] = f"expected one run folder under {work}, found {len(run_dirs)}"
    if runs_dir is not None:
        keep_small_files(work, out / "files" / job.table / job.name)
    return _finish(out, job, result, status, log)


def run_sweep(sweep: Sweep, out: Path, env: dict, slot: str, timeout: float | None, runs_dir: Path | None = None,
              on_result: Callable[[dict], None] | None = None) -> list[dict]:
    """Train the sweep's seeds in one ``gmmgan train --seeds`` process, then evaluate each seed's run
    folder in turn; write each seed's result JSON as soon as it is known. Returns the results.

    The training gets ``timeout`` times the number of seeds (one run's time limit each), every
    evaluation command ``timeout``. In each result, ``wall_s.train`` is the seed's share of the
    sweep's training time (that time over the number of seeds; ``sweep.train_wall_s`` is all of it)
    and ``run_dir`` the seed's folder inside the sweep folder. A seed that diverged (the other seeds
    go on) fails alone; when the whole training fails, every seed fails with its log. The sweep's
    training goes under ``runs_dir/<table>/<sweep>/`` (default ``out/runs``); with another
    ``runs_dir``, the step logs and small files of each seed are copied to
    ``out/files/<table>/<job>/`` and the sweep's config and summary to ``out/files/<table>/<sweep>/``.
    """
    from gmmgan.gan.sweep import DIVERGED_NAME, SUMMARY_NAME, seed_dir

    work = _fresh((runs_dir or out / "runs") / sweep.table / sweep.name)
    train = sweep_command(sweep, work)
    started = utc_now()
    n = len(sweep.jobs)
    status, wall = _run_step(train, env, work / "train.log", timeout * n if timeout else None)
    roots = [p for p in work.iterdir() if p.is_dir()]
    root = roots[0] if len(roots) == 1 else None
    summary: dict = {}
    if root is not None and (root / SUMMARY_NAME).is_file():
        try:
            summary = read_json(root / SUMMARY_NAME)
        except (OSError, ValueError):
            summary = {}
    # A sweep with a diverged seed exits 1 after the others finished; its summary says which did.
    trained = {int(s) for s in summary.get("finished", [])} if summary else (set(sweep.seeds) if status == "ok" else set())
    diverged = {int(s): why for s, why in summary.get("diverged", {}).items()}
    results = []
    for job in sweep.jobs:
        result = _new_result(job, slot, train)
        result["started"] = started
        result["wall_s"]["train"] = wall / n
        result["sweep"] = {"name": sweep.name, "seeds": sweep.seeds, "train_status": status,
                           "train_wall_s": round(wall, 2), "dir": str(root) if root else None}
        log: Path | None = work / "train.log"
        run_dir = root / summary.get("run_dirs", {}).get(str(job.seed), seed_dir(root, job.seed).name) if root else None
        logs = work / job.name
        if root is None:
            seed_status = status if status != "ok" else "failed"
            if status == "ok":
                result["error"] = f"expected one sweep folder under {work}, found {len(roots)}"
        elif job.seed in diverged or (run_dir / DIVERGED_NAME).is_file():
            seed_status = "failed"
            why = diverged.get(job.seed) or _tail(run_dir / DIVERGED_NAME)
            result["error"] = f"seed {job.seed} diverged in the sweep (the other seeds went on): {why}"
        elif job.seed in trained:
            seed_status, eval_log = _evaluate(job, run_dir, result, env, timeout, logs)
            log = eval_log or log
        else:
            seed_status = status if status != "ok" else "failed"
        if runs_dir is not None:
            files = [work / "train.log", *sorted(logs.glob("*.log"))]
            if run_dir is not None:
                files += [run_dir / name for name in SMALL_FILES]
            _copy_files(files, out / "files" / job.table / job.name)
        results.append(_finish(out, job, result, seed_status, log))
        if on_result is not None:
            on_result(results[-1])
    if runs_dir is not None:
        _copy_files([work / "train.log", *((root / name for name in SWEEP_FILES) if root else ())],
                    out / "files" / sweep.table / sweep.name)
    return results


def _result_line(r: dict) -> str:
    if r["status"] == "ok":
        return f"{r['status']:7s} {r['table']}/{r['job']} in {r['wall_s']['total']:.0f} s: {r.get('metrics', '')}"
    return f"{r['status']} {r['table']}/{r['job']}: {r['error']}"


def run_all(jobs: list[Job], out: Path, slots: list[tuple[str, dict]], *, timeout: float | None = None,
            force: bool = False, runs_dir: Path | None = None, sweep: bool = True, sweep_size: int | None = None,
            log: Callable[[str], None] = print) -> list[dict]:
    """Run ``jobs`` on ``slots`` ((name, environment) pairs), at most one unit per slot at a time.

    A unit is one sweep (the jobs of a group still to do, at most ``sweep_size`` seeds each; see
    :func:`run_sweep`), or with ``sweep=False`` one job (:func:`run_job`). Jobs whose result JSON
    already says 'ok' are skipped unless ``force``. Returns the results of the jobs run now, in
    the order they finished.
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

    def finished(r: dict) -> None:
        log(_result_line(r))
        done.append(r)

    def one(unit: Job | Sweep) -> None:
        name, env = free.get()
        try:
            if isinstance(unit, Sweep):
                log(f"start {unit.table}/{unit.name} ({len(unit.jobs)} seed{'s' * (len(unit.jobs) > 1)}: "
                    f"{', '.join(j.name for j in unit.jobs)}) on {name}")
                run_sweep(unit, out, env, name, timeout, runs_dir, on_result=finished)
            else:
                log(f"start {unit.table}/{unit.name} on {name}")
                finished(run_job(unit, out, env, name, timeout, runs_dir))
        finally:
            free.put((name, env))

    units = make_sweeps(todo, sweep_size) if sweep else todo
    with ThreadPoolExecutor(max_workers=max(1, len(slots))) as pool:
        list(pool.map(one, units))
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
    """The options every results script shares: overrides, time limit, run folders, sweeps, dry run, redo."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra gmmgan config override for every run (repeatable)" + set_example)
    p.add_argument("--timeout", type=float, default=None,
                   help=f"seconds per {unit} step before it is killed: each evaluation command gets this, a sweep's "
                   "training this times its number of seeds (default: none)")
    p.add_argument("--runs-dir", default=None, help="where the run folders (checkpoints, snapshots) go; default "
                   "OUT/runs. Another folder keeps OUT small: only JSON, logs and small files are copied there")
    p.add_argument("--no-sweep", dest="sweep", action="store_false",
                   help="train every seed in its own process (gmmgan train ... seed=S) instead of each config's "
                   "seeds as one sweep (gmmgan train ... --seeds S)")
    p.add_argument("--sweep-size", type=int, default=None, metavar="N",
                   help="at most N seeds per sweep (default: all the seeds of a config in one sweep); smaller "
                   "sweeps spread one config over more slots, or fit in less GPU memory")
    p.add_argument("--dry-run", action="store_true", help="print the commands of every run, run nothing")
    p.add_argument("--force", action="store_true", help=f"redo {unit}s whose result JSON exists")


def check_run_options(args) -> str | None:
    """What is wrong with the shared options, or None."""
    if args.sweep_size is not None and args.sweep_size < 1:
        return "--sweep-size must be >= 1"
    if args.sweep_size is not None and not args.sweep:
        return "--sweep-size sets the size of sweeps; drop it with --no-sweep"
    if args.timeout is not None and args.timeout <= 0:
        return "--timeout must be > 0"
    return None

"""Render the result JSON files of results_2d.py / results_images.py as markdown tables.

    python -m benchmarks.results_report RESULTS_DIR [-o docs/results_tables.md]

One section per table found under ``RESULTS_DIR/json/``: how it was produced (commands, date,
machine and GPU, torch version, wall time, training budget, shortened or not, overrides), then the
rows as mean +- standard error over seeds, the published anchor (marked "published") and the
target of docs/protocols.md, section 'Targets'; a value that meets its target is marked ✓, one that misses it ✗.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

# docs/protocols.md, section 'Targets'. 2-D targets: every seed captures every mode, mean HQ and mean KL bounds.
TARGETS_2D = {"ring": {"n_modes": 8, "hq": 0.98, "kl": 0.01}, "grid": {"n_modes": 25, "hq": 0.98, "kl": 0.02}}
ANCHORS_2D = {"ring": ("PacGAN2", 7.9, 0.956, 0.07), "grid": ("PacGAN4", 24.8, 0.936, 0.04)}
PRIOR_ORDER = ("fitted_gmm", "fixed_gmm", "learnable_gmm", "gmm_reg", "gaussian")
MARK = {True: " ✓", False: " ✗", None: ""}


def mean_se(values: list[float]) -> tuple[float, float | None]:
    """(mean, standard error or None for one value), as gmmgan's own reports compute them."""
    from gmmgan._stats import mean_se as stats

    s = stats(values)
    return s["mean"], s["se"]


def fmt(values: list[float], digits: int, scale: float = 1.0, mark: bool | None = None) -> str:
    if not values:
        return "-"
    m, se = mean_se([v * scale for v in values])
    return f"{m:.{digits}f}" + ("" if se is None else f" ± {se:.{digits}f}") + MARK[mark]


def load(results_dir: Path) -> dict[str, dict]:
    """{table: {'runs': [result dicts], 'invocations': [...]}} from RESULTS_DIR/json/<table>/."""
    tables: dict[str, dict] = {}
    root = results_dir / "json"
    if not root.is_dir():
        raise FileNotFoundError(f"no json/ folder under '{results_dir}'; give the --out folder of results_2d.py "
                                "or results_images.py.")
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        runs = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json")) if not p.name.startswith("_")]
        inv = folder / "_invocations.json"
        tables[folder.name] = {"runs": runs, "invocations": json.loads(inv.read_text()) if inv.is_file() else []}
    return tables


def provenance(t: dict) -> list[str]:
    """Bullet lines: commands, date, machine, torch, wall time, budget, overrides, failures."""
    runs, inv = t["runs"], t["invocations"]
    ok = [r for r in runs if r["status"] == "ok"]
    lines = []
    cmds = list(dict.fromkeys(i["command"] for i in inv))
    if cmds:
        lines.append("- Produced by (repository root): " + "; ".join(f"`{c}`" for c in cmds))
    if inv:
        last = inv[-1]
        m = last.get("machine", {})
        where = f"{m.get('cpu_model', '?')}, {m.get('cpu_count', '?')} CPUs"
        if m.get("gpus"):
            where += "; GPUs " + "; ".join(m["gpus"]) + f" (used: {m.get('gpu_ids_used')})"
        lines.append(f"- Date: {inv[0]['started']} to {last['finished']}; machine: {where}; torch {m.get('torch', '?')}")
        lines.append(f"- Wall time of the invocation(s): {sum(i['wall_s'] for i in inv):.0f} s")
    if ok:
        walls = [r["wall_s"]["total"] for r in ok]
        rates = [r["train_images_per_s"] for r in ok if r.get("train_images_per_s")]
        lines.append(f"- Per run (train + eval, {ok[0].get('device', '?')}): median {statistics.median(walls):.0f} s, "
                     f"range {min(walls):.0f}-{max(walls):.0f} s, {len(ok)} run{'s' * (len(ok) > 1)}"
                     + (f"; training throughput median {statistics.median(rates):,.0f} images/s per run" if rates else ""))
    budgets = sorted({(r["budget_kimg"], r["protocol_kimg"]) for r in runs})
    for b, p in budgets:
        short = b < p
        lines.append(f"- Budget: {b:g} kimg per run" + (f" — **shortened: the protocol is {p:g} kimg**" if short
                                                        else " (the protocol's)"))
    extra = sorted({o for r in runs for o in r.get("overrides", []) if not o.startswith("schedule.total_kimg=")})
    if extra:
        lines.append("- Overrides on top of the config files: " + ", ".join(f"`{o}`" for o in extra))
    bad = [r for r in runs if r["status"] != "ok"]
    if bad:
        lines.append(f"- **{len(bad)} run(s) failed and are left out**: " + ", ".join(f"{r['job']} ({r['status']})"
                                                                                     for r in bad))
    if ok:
        first = min(ok, key=lambda r: (r.get("config", ""), r["seed"]))
        swept = "sweep" in first  # trained as one seed sweep (--seeds), evaluated per seed folder
        lines.append(f"- Commands of one {'seed' if swept else 'run'} ({first['job']}; "
                     + ("its sweep trains all the seeds of its config with --seeds, the evaluation differs per "
                        "seed folder): " if swept else "other runs differ in seed=): ")
                     + "; ".join(f"`{c}`" for c in first["commands"]))
    return lines


def _ok_by(runs: list[dict], key: str) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for r in runs:
        if r["status"] == "ok":
            groups.setdefault(r[key], []).append(r)
    return groups


def table_2d(name: str, t: dict) -> list[str]:
    tgt, (anchor, a_modes, a_hq, a_kl) = TARGETS_2D[name], ANCHORS_2D[name]
    k = tgt["n_modes"]
    out = [f"| prior | seeds | modes (of {k}) | all seeds {k}/{k}? | high quality % | reverse KL |",
           "| --- | --- | --- | --- | --- | --- |"]
    groups = _ok_by(t["runs"], "prior")
    for prior in sorted(groups, key=lambda p: PRIOR_ORDER.index(p) if p in PRIOR_ORDER else 99):
        ms = [r["metrics"] for r in groups[prior]]
        modes, hq, kl = [m["modes"] for m in ms], [m["hq"] for m in ms], [m["kl"] for m in ms]
        all_k = sum(v == k for v in modes)
        out.append(f"| {prior} | {len(ms)} | {fmt(modes, 2)} (min {min(modes)}) | "
                   f"{'yes' if all_k == len(ms) else 'no'} ({all_k}/{len(ms)}){MARK[all_k == len(ms)]} | "
                   f"{fmt(hq, 1, 100, mean_se(hq)[0] >= tgt['hq'])} | {fmt(kl, 4, 1, mean_se(kl)[0] <= tgt['kl'])} |")
    out.append(f"| {anchor} (published) | | {a_modes} | | {100 * a_hq:.1f} | {a_kl} |")
    out.append(f"| target | | {k} | yes | ≥ {100 * tgt['hq']:g} | ≤ {tgt['kl']} |")
    floors = {r["metrics"].get("kl_floor") for r in t["runs"] if r["status"] == "ok"}
    out.append("")
    out.append(f"Mean ± standard error over seeds (one training run per seed, metrics of {_n_2d(t)} samples of its "
               f"EMA generator). Perfect-sampler KL floor: {', '.join(f'{f:g}' for f in floors if f is not None)}.")
    return out


def _n_2d(t):
    ns = {r["metrics"].get("n_samples") for r in t["runs"] if r["status"] == "ok"}
    return ", ".join(f"{n:,}" for n in sorted(n for n in ns if n))


def table_stacked(t: dict) -> list[str]:
    out = ["| configuration | seeds | modes (of 1000) | KL | target | published anchor |", "| --- | --- | --- | --- | --- | --- |"]
    for row, runs in sorted(_ok_by(t["runs"], "row").items(), key=lambda kv: ("dquarter" in kv[0], kv[0])):
        modes, kl = [r["metrics"]["modes"] for r in runs], [r["metrics"]["kl"] for r in runs]
        if "dquarter" in row:
            mm, mk, target, anchor = mean_se(modes)[0] >= 995, mean_se(kl)[0] <= 0.2, "≥ 995 modes, KL ≤ 0.2", \
                "PacDCGAN4: 667 modes, KL 1.81"
        else:
            mm, mk, target, anchor = mean_se(modes)[0] >= 1000, mean_se(kl)[0] <= 0.03, "1000 modes, KL ≤ 0.03", \
                "PacDCGAN2: 1000 modes, KL 0.06"
        out.append(f"| {row} | {len(runs)} | {fmt(modes, 1, 1, mm)} | {fmt(kl, 3, 1, mk)} | {target} | {anchor} (published) |")
    n = sorted({r.get("eval_samples") for r in t["runs"]} - {None})
    floors = sorted({round(r["metrics"]["kl_floor"], 4) for r in t["runs"] if r["status"] == "ok"
                     and r["metrics"].get("kl_floor") is not None})
    out += ["", (f"Modes and KL(p̂ ‖ uniform over 1,000) of {', '.join(f'{x:,}' for x in n)} samples per run, each "
                 "channel labelled by the MNIST feature classifier; mean ± standard error over seeds; perfect-sampler "
                 f"KL floor {', '.join(map(str, floors)) or '?'} at that count. 'dquarter' rows: D at 1/4 of G.")]
    return out


IMG_COLS = (("fid", "FID", 2, 1), ("kid_mean", "KID", 4, 1), ("precision", "precision", 3, 1),
            ("recall", "recall", 3, 1), ("density", "density", 3, 1), ("coverage", "coverage", 3, 1))


def table_images(t: dict, compare: bool) -> list[str]:
    out = ["| data | prior | seeds | " + " | ".join(c[1] for c in IMG_COLS) + " |",
           "| --- | --- | --- | " + " | ".join("---" for _ in IMG_COLS) + " |"]
    groups = _ok_by(t["runs"], "row")
    datasets = sorted({_dataset(row) for row in groups})
    verdict = []
    for ds in datasets:
        rows = {row: runs for row, runs in groups.items() if _dataset(row) == ds}
        for row, runs in sorted(rows.items()):
            cells = [fmt([r["metrics"][k] for r in runs], d, s) for k, _, d, s in IMG_COLS]
            out.append(f"| {ds} | {_prior(row)} | {len(runs)} | " + " | ".join(cells) + " |")
        refs = [r for runs in rows.values() for r in runs]
        cells = [f"{statistics.mean(r['metrics'][f'ref_{k}'] for r in refs):.{d}f}" for k, _, d, _ in IMG_COLS]
        out.append(f"| {ds} | *real test vs real train* | | " + " | ".join(cells) + " |")
        if compare:
            verdict += _beats(rows)
    n = sorted({r["metrics"].get("n_fake") for runs in groups.values() for r in runs} - {None})
    out += ["", (f"Against the full training split in the feature space of the project's classifier; "
                 f"{', '.join(f'{x:,}' for x in n)} generated images per run and as many real test images for the "
                 "reference row; mean ± standard error over seeds (training seeds; each run sampled once).")]
    return out + verdict


def _dataset(row: str) -> str:
    return "Fashion-MNIST" if row.startswith("fashion") else ("MNIST, 500 images" if row.startswith("mnist500") else "MNIST")


def _prior(row: str) -> str:
    return "fitted GMM" if row.endswith("fitted_gmm") else ("Gaussian" if row.endswith("gaussian") else row)


def _beats(rows: dict[str, list[dict]]) -> list[str]:
    """The mnist500 target: the GMM prior beats the Gaussian on FID (lower) and coverage (higher)."""
    gmm = next((v for k, v in rows.items() if k.endswith("fitted_gmm")), None)
    gau = next((v for k, v in rows.items() if k.endswith("gaussian")), None)
    if not gmm or not gau:
        return ["", "Target (GMM prior beats the Gaussian prior on FID and coverage): needs both rows."]
    lines = ["", "Target (DeLiGAN's claim; GMM prior beats the Gaussian prior on FID and coverage, same budget):"]
    for key, name, lower in (("fid", "FID", True), ("coverage", "coverage", False)):
        (mg, sg), (mb, sb) = (mean_se([r["metrics"][key] for r in x]) for x in (gmm, gau))
        better = mg < mb if lower else mg > mb
        noise = math.hypot(sg or 0, sb or 0)
        note = (" (one seed each: no error bar)" if sg is None or sb is None else
                f" (difference {abs(mg - mb):.3g} vs combined standard error {noise:.3g}"
                + (": within 2 s.e., not significant)" if abs(mg - mb) < 2 * noise else ")"))
        lines.append(f"- {name}: GMM {mg:.4g} vs Gaussian {mb:.4g}: {'met' if better else 'missed'}{MARK[better]}{note}")
    return lines


def table_cluster(t: dict) -> list[str]:
    out = ["| what is clustered | seeds | accuracy | NMI |", "| --- | --- | --- | --- |"]
    for row, runs in sorted(_ok_by(t["runs"], "row").items()):
        acc, nmi = [r["metrics"]["accuracy"] for r in runs], [r["metrics"]["nmi"] for r in runs]
        per = runs[0]["metrics"].get("per_component")
        out.append(f"| {row}: generated, {per} images per component | {len(runs)} | "
                   f"{fmt(acc, 3, 1, mean_se(acc)[0] >= 0.96)} | {fmt(nmi, 3, 1, mean_se(nmi)[0] >= 0.90)} |")
        g = [r for r in runs if "gmm_accuracy" in r["metrics"]]
        if g:
            out.append(f"| its fitted GMM alone, real MNIST test images | {len(g)} | "
                       f"{fmt([r['metrics']['gmm_accuracy'] for r in g], 3)} | {fmt([r['metrics']['gmm_nmi'] for r in g], 3)} |")
    out += ["| ClusterGAN (published) | | 0.95 | 0.89 |", "| target | | ≥ 0.96 | ≥ 0.90 |", "",
            ("Accuracy after Hungarian matching of components to the classes the MNIST classifier assigns, and NMI; "
             "mean ± standard error over seeds.")]
    return out


TITLES = {"ring": "Ring: 8 Gaussians", "grid": "Grid: 25 Gaussians", "stacked": "Stacked MNIST",
          "mnist500": "MNIST, 500 training images: GMM prior vs Gaussian prior",
          "full": "MNIST and Fashion-MNIST, full training sets", "cluster": "Clustering by component, MNIST"}


def render(results_dir: Path) -> str:
    tables = load(Path(results_dir))
    parts = []
    for name in [n for n in TITLES if n in tables] + [n for n in tables if n not in TITLES]:
        t = tables[name]
        body = (table_2d(name, t) if name in TARGETS_2D else table_stacked(t) if name == "stacked"
                else table_images(t, compare=name == "mnist500") if name in ("mnist500", "full")
                else table_cluster(t) if name == "cluster" else [f"(no renderer for table {name!r})"])
        parts.append("\n".join([f"### {TITLES.get(name, name)}", "", *provenance(t), "", *body]))
    if not parts:
        return f"(no results under {results_dir}/json)\n"
    return "\n\n".join(parts) + "\n\n✓ target met, ✗ target missed (on the mean over seeds).\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results_dir", help="the --out folder of results_2d.py / results_images.py")
    p.add_argument("-o", "--output", default=None, help="write the markdown here (default: print it)")
    args = p.parse_args(argv)
    text = render(Path(args.results_dir))
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

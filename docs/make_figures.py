"""Make the figures of docs/guide.md (docs/figures/*.png) from scratch, on a CPU.

    python docs/make_figures.py                 # both figures (the quickstart run takes minutes)
    python docs/make_figures.py --only ring     # just the GMM fit of the ring (seconds)

- ``ring_gmm_fit.png``: ``GaussianMixture(n_components=8)`` fitted to 10,000 points of the ring,
  drawn by :func:`gmmgan.plotting.plot_gmm_2d` (each component's 1- and 2-sigma ellipse, and a
  zoom on one component, since sigma = 0.01 is too small to see at full scale).
- ``quickstart_final.png``: the final plot of ``gmmgan train`` with its defaults (the quickstart:
  the 25-Gaussian grid, fitted-GMM prior), seed 0: 2,500 samples of the EMA generator over the
  true modes, titled with its modes / high-quality % / reverse KL.

Each PNG is kept under 200 KB (a warning says otherwise).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

FIGURES = Path(__file__).resolve().parent / "figures"
MAX_BYTES = 200_000


def ring_fit(out: Path) -> str:
    from gmmgan import GaussianMixture
    from gmmgan.data.toy import RING
    from gmmgan.plotting import plot_gmm_2d

    x, _ = RING.sample(10_000, seed=0)
    gm = GaussianMixture(n_components=8, random_state=0).fit(x)
    plot_gmm_2d(x, gm.weights_, gm.means_, gm.covariances_, out, covariance_type=gm.covariance_type,
                title=f"GaussianMixture(8) on the ring: log-likelihood {gm.score(x):.2f} per point", dpi=70,
                max_points=5000)
    return f"converged={gm.converged_} after {gm.n_iter_} iterations"


def quickstart(out: Path) -> str:
    from gmmgan.gan.config import load_config
    from gmmgan.gan.training_loop import train

    with tempfile.TemporaryDirectory() as tmp:
        result = train(load_config(None, [f"out={tmp}", "seed=0"]), quiet=True)
        shutil.copyfile(Path(result["run_dir"]) / "final.png", out)
    m = result["metrics"]
    return (f"{m['modes']}/{m['n_modes']} modes, HQ {100 * m['hq']:.2f}%, KL {m['kl']:.4f} "
            f"(floor {m['kl_floor']:.4f}), {result['wall_s']:.0f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=("ring", "quickstart"), default=None, help="make one figure only")
    args = p.parse_args()
    FIGURES.mkdir(exist_ok=True)
    for name, make in (("ring", ring_fit), ("quickstart", quickstart)):
        if args.only not in (None, name):
            continue
        path = FIGURES / ("ring_gmm_fit.png" if name == "ring" else "quickstart_final.png")
        info = make(path)
        size = path.stat().st_size
        print(f"{path.relative_to(FIGURES.parent.parent)}: {size / 1000:.0f} KB; {info}")
        if size > MAX_BYTES:
            print(f"warning: {path.name} is over {MAX_BYTES // 1000} KB; lower its dpi")


if __name__ == "__main__":
    main()

"""Automatic K: BIC/AIC selection over all candidates at once equals single fits, finds the true K,
rejects bad input."""

import math
import re
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gmmgan import GaussianMixture, select_n_components
from gmmgan.mixture.model_selection import check_candidates, default_candidates
from gmmgan.plotting import plot_criterion

COV_TYPES = ["full", "tied", "diag", "spherical"]


def _blobs(seed, k=4, d=2, n_per=80, sep=12.0):
    """k unit-variance blobs whose closest pair of means is ``sep`` apart."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d))
    if k > 1:
        dist = np.linalg.norm(centers[:, None] - centers[None], axis=-1) + np.eye(k) * 1e9
        centers *= sep / dist.min()
    return np.concatenate([rng.normal(size=(n_per, d)) + c for c in centers])


def _quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **kw)


def _select_and_refit(monkeypatch, X, ks, **params):
    """select_n_components, and for every candidate a plain GaussianMixture fit started from the
    initial parameters the selection gave that candidate (captured from the candidates' k-means)."""
    import gmmgan.mixture._candidates_fit as fit_module
    from gmmgan.mixture._covariance import COVARIANCES

    captured = []
    real = fit_module.kmeans_initial_states

    def spy(est, ks_, data, *args):
        states = real(est, ks_, data, *args)
        captured.append((states, data.shift))
        return states

    monkeypatch.setattr(fit_module, "kmeans_initial_states", spy)
    sel = select_n_components(X, candidates=ks, prune=False, **params)
    assert len(captured) == 1
    states, shift = captured[0]
    cov = COVARIANCES[params.get("covariance_type", "full")]
    singles = {}
    for k, start in zip(ks, states):
        init = {
            "weights_init": (start.weights / start.weights.sum()).numpy(),
            "means_init": (start.means + shift).numpy(),
            "precisions_init": cov.precisions(start.prec_chol).numpy(),
        }
        other = {key: v for key, v in params.items() if key != "random_state"}
        singles[k] = _quiet(GaussianMixture(k, **other, **init).fit, X)
    return sel, singles


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_candidates_equal_single_fits_from_the_same_start(monkeypatch, cov_type):
    # Every candidate of the joint EM is an ordinary EM fit: started from the parameters the
    # candidates' k-means gave it, a single GaussianMixture reaches the same BIC, iterations and
    # parameters.
    X = _blobs(1, k=3, d=3, n_per=60)
    ks = [1, 2, 3, 4, 5]
    sel, singles = _quiet(_select_and_refit, monkeypatch, X, ks, covariance_type=cov_type, random_state=3, tol=1e-4)
    for k in ks:
        single = singles[k]
        assert sel.bic_[k] == pytest.approx(single.bic(X), rel=1e-9)
        assert sel.aic_[k] == pytest.approx(single.aic(X), rel=1e-9)
        if k == sel.n_components_:
            assert sel.n_iter_ == single.n_iter_
            np.testing.assert_allclose(sel.means_, single.means_, rtol=1e-8, atol=1e-10)
            np.testing.assert_allclose(sel.covariances_, single.covariances_, rtol=1e-8, atol=1e-10)
    assert sel.criterion_scores_ == sel.bic_
    assert sel.n_components_ == 3


def test_n_init_and_streamed_data_match_single_fits():
    X = _blobs(2, k=3, d=2, n_per=50)
    ks = [2, 3, 4]
    chunks = [X[i : i + 37] for i in range(0, len(X), 37)]
    sel = _quiet(select_n_components, chunks, candidates=ks, n_init=2, init_params="random_from_data", random_state=5,
                 prune=False)
    for k in ks:
        single = _quiet(GaussianMixture(k, n_init=2, init_params="random_from_data", random_state=5).fit, X)
        assert sel.bic_[k] == pytest.approx(single.bic(X), rel=1e-9)


@settings(max_examples=8, deadline=None)
@given(k=st.integers(1, 5), d=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_picks_true_k_on_well_separated_blobs(k, d, seed):
    X = _blobs(seed, k=k, d=d, n_per=60, sep=14.0)
    model = _quiet(select_n_components, X, candidates=range(1, 8), covariance_type="full", n_init=2, random_state=0)
    assert model.n_components_ == k
    assert min(model.bic_, key=model.bic_.get) == k
    assert sorted(model.criterion_scores_) == list(range(1, 8))


def test_auto_on_estimator_and_aic():
    X = _blobs(4, k=4, d=2)
    gm = _quiet(GaussianMixture(n_components="auto", random_state=0).fit, X)
    assert gm.n_components == "auto"  # the parameter is left as given, the choice is n_components_
    assert gm.n_components_ == 4 and gm.means_.shape == (4, 2)
    assert gm.candidates_ == default_candidates(len(X))
    labels = _quiet(GaussianMixture(n_components="auto", random_state=0).fit_predict, X)
    assert labels.shape == (len(X),) and len(np.unique(labels)) == 4
    by_aic = _quiet(select_n_components, X, candidates=range(1, 7), criterion="aic", random_state=0)
    assert by_aic.criterion_ == "aic" and by_aic.criterion_scores_ == by_aic.aic_
    assert by_aic.n_components_ == min(by_aic.aic_, key=by_aic.aic_.get)


def test_auto_model_saves_and_loads(tmp_path):
    X = _blobs(3, k=3, d=2, n_per=40)
    gm = _quiet(GaussianMixture(n_components="auto", random_state=0).fit, X)
    gm.save(tmp_path / "auto.safetensors")
    back = GaussianMixture.load(tmp_path / "auto.safetensors")
    assert back.means_.shape == (gm.n_components_, 2)
    np.testing.assert_allclose(back.score_samples(X), gm.score_samples(X), rtol=1e-12)


def test_warns_when_the_largest_candidate_wins():
    X = _blobs(10, k=4, d=2)
    with pytest.warns(UserWarning, match="largest candidate"):
        model = select_n_components(X, candidates=[1, 2, 3], random_state=0)
    assert model.n_components_ == 3


def test_torch_input_gives_torch_output():
    X = torch.as_tensor(_blobs(5, k=2, d=2))
    model = _quiet(select_n_components, X, candidates=[1, 2, 3], random_state=0)
    assert isinstance(model.means_, torch.Tensor) and model.n_components_ == 2
    assert isinstance(model.predict(X), torch.Tensor)


def test_default_candidates():
    assert default_candidates(5) == [1, 2, 3, 4, 5]
    assert default_candidates(1000) == list(range(1, 21))
    assert check_candidates((3, 1, 3), 10) == [1, 3]


@pytest.mark.parametrize(
    "candidates, match",
    [
        ([], "empty"),
        (range(0), "empty"),
        ([0, 1], "positive"),
        ([1.5], "positive ints"),
        ([1, 500], "exceeds the number of samples"),
        (5, "iterable"),
    ],
)
def test_bad_candidates(candidates, match):
    X = _blobs(0, k=2, n_per=20)
    with pytest.raises(ValueError, match=match):
        select_n_components(X, candidates=candidates)


def test_bad_arguments():
    X = _blobs(0, k=2, n_per=20)
    with pytest.raises(ValueError, match="criterion"):
        select_n_components(X, criterion="likelihood")
    with pytest.raises(ValueError, match="candidates="):
        select_n_components(X, n_components=3)
    with pytest.raises(ValueError, match="cannot be combined"):
        GaussianMixture("auto", means_init=np.zeros((2, 2))).fit(X)
    with pytest.raises(ValueError, match="positive int or 'auto'"):
        GaussianMixture("many").fit(X)
    with pytest.raises(ValueError, match="covariance_type"):
        select_n_components(X, covariance_type="banana")
    with pytest.raises(ValueError, match="NaN"):
        select_n_components(np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="n_samples >= 2"):
        select_n_components(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="exceeds the number of samples"):
        select_n_components([X[:10], X[10:20]], candidates=[25])  # streamed data: checked after the count


def test_plot_criterion(tmp_path):
    X = _blobs(6, k=3)
    model = _quiet(select_n_components, X, candidates=range(1, 6), random_state=0)
    fig = plot_criterion(model, tmp_path / "sub" / "bic.png")
    assert (tmp_path / "sub" / "bic.png").stat().st_size > 1000
    ax = fig.axes[0]
    assert any("chosen K = 3" in t.get_text() for t in ax.get_legend().get_texts())
    plot_criterion({1: 3.0, 2: 1.0, 3: 2.0}, None)
    with pytest.raises(ValueError, match="empty"):
        plot_criterion({})
    with pytest.raises(ValueError, match="criterion_scores_"):
        plot_criterion(GaussianMixture(2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    X = _blobs(8, k=3, d=3, n_per=50)
    cpu = _quiet(select_n_components, X, candidates=range(1, 6), random_state=0)
    gpu = _quiet(select_n_components, torch.as_tensor(X, device="cuda"), candidates=range(1, 6), random_state=0)
    assert gpu.n_components_ == cpu.n_components_ and gpu.means_.device.type == "cuda"
    for k in cpu.bic_:
        assert gpu.bic_[k] == pytest.approx(cpu.bic_[k], rel=1e-6)


def test_float32_agrees_with_float64():
    # float32 takes the whitened E-step, float64 the quadratic-feature one: both must agree.
    X = _blobs(9, k=3, d=3, n_per=60)
    f64 = _quiet(select_n_components, X, candidates=range(1, 6), random_state=0)
    f32 = _quiet(select_n_components, X.astype(np.float32), candidates=range(1, 6), random_state=0)
    assert f32.means_.dtype == np.float32 and f32.n_components_ == f64.n_components_ == 3
    for k in f64.bic_:
        assert f32.bic_[k] == pytest.approx(f64.bic_[k], rel=1e-4)


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_empty_components_reseeded_as_in_single_fits(monkeypatch, cov_type):
    # A component with fewer than 4 points counts as empty here, so that re-seeding happens on
    # tiny data; the candidates' fit must re-seed exactly as single fits do.
    import gmmgan.mixture._candidates_em as candidates_module
    import gmmgan.mixture._em_state as em_module
    import gmmgan.mixture.gaussian_mixture as gm_module

    for module in (em_module, gm_module, candidates_module):
        monkeypatch.setattr(module, "EMPTY_COMPONENT", 4.0, raising=False)
    X = _blobs(0, k=2, d=2, n_per=20, sep=8.0)
    ks = [2, 6, 9]
    with pytest.warns(RuntimeWarning, match="re-seeded"):
        sel, singles = _select_and_refit(monkeypatch, X, ks, covariance_type=cov_type, random_state=1)
    for k in ks:
        assert sel.bic_[k] == pytest.approx(singles[k].bic(X), rel=1e-8)
    assert singles[9].reseeded_  # the largest candidate did re-seed


def test_cli_fit_k_auto(tmp_path, capsys):
    from gmmgan.cli import main

    X = _blobs(12, k=3, d=2, n_per=40)
    np.save(tmp_path / "blobs.npy", X)
    model = tmp_path / "auto.safetensors"
    rc = main(["fit", str(tmp_path / "blobs.npy"), "-k", "auto", "-o", str(model), "--no-plot", "--seed", "0"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "K chosen by BIC: 3" in out and "<- chosen" in out
    for k in range(1, 21):  # the default candidates, each with its BIC
        assert re.search(rf"^\s*{k}\s+[\d,.-]+\s+[\d,.-]+", out, re.MULTILINE), f"row K={k} missing:\n{out}"
    assert GaussianMixture.load(model).means_.shape == (3, 2)


def test_lloyd_candidates_matches_lloyd_per_problem():
    # The joint Lloyd steps of model selection's initialisation: every problem ends exactly
    # where lloyd alone ends, including the move of an empty cluster to the farthest points.
    from gmmgan.mixture import _kmeans
    from gmmgan.mixture._candidates_kmeans import lloyd_candidates
    from gmmgan.mixture._data_source import make_source

    X = torch.as_tensor(_blobs(3, k=4, d=3, n_per=40))
    source = make_source(X, device="cpu", dtype=torch.float64, chunk_size=50, n_components=1)
    shift = torch.zeros(3, dtype=torch.float64)
    ks = [1, 3, 5, 8]
    g = torch.Generator().manual_seed(0)
    starts = [X[torch.randperm(len(X), generator=g)[:k]].clone() for k in ks]
    starts[2][4] = 1e3  # a center no point is nearest to: its cluster empties
    for steps in (1, 3, 50):
        together = lloyd_candidates(source, torch.cat(starts), ks, shift, max_iter=steps, tol=1e-4)
        for k, a, c0 in zip(ks, np.cumsum([0] + ks[:-1]), starts):
            single = _kmeans.lloyd(source, c0, shift, max_iter=steps, tol=1e-4)
            torch.testing.assert_close(together[a : a + k], single, rtol=1e-12, atol=1e-12)
    assert not torch.equal(together[4:9], starts[2])


@pytest.mark.parametrize("segment_reduce", [True, False])
def test_normalize_is_exact_when_candidates_differ_by_hundreds_of_nats(monkeypatch, segment_reduce):
    # Responsibilities and per-candidate logsumexp of the candidates' E-step against torch's, for a
    # row where one candidate is 1000 nats below another (the float64 fast path must fall back),
    # with the CPU's segment reductions and with the scatter kernels other devices use.
    import gmmgan.mixture._candidates_em as candidates_module
    from gmmgan.mixture._candidates_em import _Candidates

    monkeypatch.setattr(candidates_module, "SEGMENT_REDUCE_DEVICES", ("cpu",) if segment_reduce else ())
    ks = [1, 2, 3]
    for dtype in (torch.float64, torch.float32):
        cands = _Candidates(ks, torch.full((6,), 0.5, dtype=dtype), torch.zeros(6, 2, dtype=dtype),
                       torch.ones(6, 2, dtype=dtype), "diag")
        g = torch.Generator().manual_seed(1)
        wlp = torch.randn(4, 6, generator=g, dtype=torch.float64).to(dtype) * 3
        wlp[1, 1:3] -= 1000.0  # candidate 2 explains row 1 far worse than candidates 1 and 3
        wlp[2, 0] += 700.0
        lpn, resp = cands.normalize_(wlp.clone(), lambda w=wlp: w.clone())
        for c, (a, k) in enumerate(zip([0, 1, 3], ks)):
            torch.testing.assert_close(lpn[:, c], torch.logsumexp(wlp[:, a : a + k], 1))
            torch.testing.assert_close(resp[:, a : a + k], torch.softmax(wlp[:, a : a + k], 1))


@pytest.mark.parametrize("cov_type", ["full", "diag"])
def test_grid_layout_equals_segmented_e_step(monkeypatch, cov_type):
    # The grouped (candidates, max K) layout of the E-step and the segmented one over sum K
    # columns are two layouts of the same arithmetic: same BICs, iterations and parameters.
    import gmmgan.mixture._candidates_em as candidates_module

    X = _blobs(7, k=5, d=2, n_per=50)
    ks = list(range(1, 13))  # 3 groups of 4 candidates
    grid = _quiet(select_n_components, X, candidates=ks, covariance_type=cov_type, random_state=0)
    monkeypatch.setattr(candidates_module, "GROUPED_MAX_FEATURES", 0)
    flat = _quiet(select_n_components, X, candidates=ks, covariance_type=cov_type, random_state=0)
    for k in ks:
        assert grid.bic_[k] == pytest.approx(flat.bic_[k], rel=1e-10)
    assert grid.n_components_ == flat.n_components_ == 5 and grid.n_iter_ == flat.n_iter_
    np.testing.assert_allclose(grid.means_, flat.means_, rtol=1e-9, atol=1e-12)


def test_same_seed_same_result_other_seed_other_start():
    X = _blobs(11, k=4, d=2, n_per=40, sep=3.0)
    runs = [_quiet(select_n_components, X, candidates=range(1, 9), random_state=s) for s in (5, 5, 6)]
    assert runs[0].bic_ == runs[1].bic_  # bit for bit
    np.testing.assert_array_equal(runs[0].means_, runs[1].means_)
    assert runs[0].bic_ != runs[2].bic_


@pytest.mark.parametrize("criterion", ["bic", "aic"])
def test_pruning_stops_hopeless_candidates_only(criterion):
    # Pruned candidates stop early: their scores are those of the parameters they stopped at, an
    # upper bound of their full fits' (EM never lowers the likelihood); every other candidate is
    # the same fit as without pruning, and the choice is the same.
    X = _blobs(13, k=6, d=2, n_per=60, sep=5.0)
    ks = range(1, 15)
    full = _quiet(select_n_components, X, candidates=ks, criterion=criterion, random_state=0, prune=False)
    fast = _quiet(select_n_components, X, candidates=ks, criterion=criterion, random_state=0)
    assert full.pruned_ == [] and fast.pruned_  # some candidates were stopped here
    chosen = full.n_components_
    assert fast.n_components_ == chosen and fast.n_iter_ == full.n_iter_
    assert chosen == 6 or criterion == "aic"  # AIC's lighter penalty may overfit
    for k in ks:
        if k in fast.pruned_:
            assert fast.criterion_scores_[k] >= full.criterion_scores_[k] - 1e-8
            assert fast.criterion_scores_[k] > fast.criterion_scores_[chosen]
        else:
            assert fast.criterion_scores_[k] == pytest.approx(full.criterion_scores_[k], rel=1e-12)
    np.testing.assert_array_equal(fast.means_, full.means_)


def test_pruned_fit_scores_are_those_of_the_parameters_they_kept(monkeypatch):
    # A pruned fit keeps the parameters of its last E-step and the log-likelihood that E-step
    # computed; a fresh pass over the data with those parameters gives the same number.
    import gmmgan.mixture._candidates_fit as fit_module
    from gmmgan.mixture._candidates_em import log_likelihoods
    from gmmgan.mixture._covariance import COVARIANCES
    from gmmgan.mixture._em_state import _Shifted

    seen = {}
    real = fit_module.run_em

    def spy(slots, data, *args):
        real(slots, data, *args)
        seen["slots"], seen["data"] = slots, data

    monkeypatch.setattr(fit_module, "run_em", spy)
    X = _blobs(13, k=6, d=2, n_per=60, sep=5.0)
    fast = _quiet(select_n_components, X, candidates=range(1, 15), random_state=0)
    pruned = [s for s in seen["slots"] if s.pruned]
    assert [s.k for s in pruned] == fast.pruned_
    again = log_likelihoods([s.state for s in pruned], seen["data"], COVARIANCES["full"])
    assert isinstance(seen["data"], _Shifted)
    for s, ll in zip(pruned, again):
        assert s.log_likelihood == pytest.approx(ll, rel=1e-10)


def test_hopeless_rule():
    # A fit is dropped only when, gaining its latest change in every remaining iteration, its
    # criterion would stay above the best current one; one finished iteration is never enough.
    from gmmgan.mixture._candidates_em import _Slot, hopeless

    def slot(k, bounds):
        return _Slot(k, 0, None, None, lower_bound=bounds[-1], bounds=list(bounds))

    n, penalty = 100, {1: 0.0, 2: 10.0, 3: 20.0}
    best = slot(1, [-2.0, -1.0])  # criterion 200, the bound to beat
    close = slot(2, [-1.6, -1.5])  # 310 now; 10 more iterations at +0.1 reach 110: kept
    far = slot(3, [-3.01, -3.0])  # 620 now; 10 at +0.01 reach 600: dropped
    new = slot(3, [-9.0])  # first iteration: no change known yet
    active = [best, close, far, new]
    changes = [1.0, 0.1, 0.01, math.inf]
    assert hopeless(active, active, changes, penalty, n, horizon=10) == {2}
    assert hopeless(active, active, changes, penalty, n, horizon=0) == set()
    assert hopeless(active, active, changes, penalty, n, horizon=1) == {1, 2}


@pytest.mark.parametrize(("init_params", "steps"), [("k-means++", 5), ("kmeans", 300)])
def test_selection_lloyd_steps(monkeypatch, init_params, steps):
    # k-means++ starts of the selection take 5 Lloyd steps (EM finishes the job), 'kmeans' ones
    # run Lloyd to convergence as a single fit's.
    import gmmgan.mixture._candidates_init as init_module

    seen = []
    real = init_module.lloyd_candidates
    monkeypatch.setattr(init_module, "lloyd_candidates", lambda *a, **kw: seen.append(kw["max_iter"]) or real(*a, **kw))
    _quiet(select_n_components, _blobs(2, k=3), candidates=[1, 2, 3, 4], init_params=init_params, random_state=0)
    assert seen == [steps]


def test_full_covariance_start_is_the_same_in_small_pieces(monkeypatch):
    # The k-means starts' outer products are summed a few rows at a time when they would be
    # large: the starting parameters do not depend on the piece size.
    import gmmgan.mixture._candidates_init as init_module

    X = _blobs(3, k=3, d=3)
    states = {}
    real = init_module.kmeans_initial_states
    for budget in (init_module.OUTER_PRODUCT_BYTES, 8 * 3 * 3 * 7):  # everything at once; 7 rows a piece
        monkeypatch.setattr(init_module, "OUTER_PRODUCT_BYTES", budget)
        monkeypatch.setattr("gmmgan.mixture._candidates_fit.kmeans_initial_states",
                            lambda *a, budget=budget: states.setdefault(budget, real(*a)))
        _quiet(select_n_components, X, candidates=[1, 2, 3, 4], covariance_type="full", random_state=0, max_iter=1)
    whole, pieces = states.values()
    for a, b in zip(whole, pieces):
        torch.testing.assert_close(a.covariances, b.covariances, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(a.means, b.means, rtol=0, atol=0)


def test_cli_fit_k_auto_draws_the_criterion_against_k(tmp_path, capsys):
    from gmmgan.cli import main

    X = _blobs(12, k=3, d=5, n_per=40)  # not 2-D: no fit plot, but the choice of K is drawn
    np.save(tmp_path / "blobs.npy", X)
    model, crit = tmp_path / "auto.safetensors", tmp_path / "bic.png"
    args = ["fit", str(tmp_path / "blobs.npy"), "-k", "auto", "-o", str(model), "--seed", "0"]
    assert main([*args, "--criterion-plot", str(crit)]) == 0
    assert crit.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"criterion plot saved to {crit}" in capsys.readouterr().out
    # Not overwritten without --force; and the option needs -k auto.
    before = crit.read_bytes()
    assert main([*args, "--criterion-plot", str(crit), "-o", str(tmp_path / "other.safetensors")]) == 2
    assert "exists" in capsys.readouterr().err and crit.read_bytes() == before
    assert main(["fit", str(tmp_path / "blobs.npy"), "-k", "3", "-o", str(tmp_path / "k3.safetensors"),
                 "--criterion-plot", str(tmp_path / "x.png")]) == 2
    assert "needs -k auto" in capsys.readouterr().err

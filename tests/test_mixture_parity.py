"""From the same initial parameters, gmmgan's EM takes scikit-learn's steps (float64 to 1e-6).

Also what scikit-learn users compare next: fit_predict, max_iter=1, tol=0 / reg_covar=0, warm-start
chains, n_init's choice, the random inits given the same draws, verbose output, float64 scoring.
"""

import re
import warnings

import numpy as np
import pytest
import torch
from _helpers import blob_data, fit_quietly, rel_error, without_times

from gmmgan import BayesianGaussianMixture, GaussianMixture

sk_mixture = pytest.importorskip("sklearn.mixture")
sk_exceptions = pytest.importorskip("sklearn.exceptions")

COV_TYPES = ["full", "tied", "diag", "spherical"]


def _blobs(rng, n=400, d=3, k=4, spread=6.0):
    centers = rng.normal(scale=spread, size=(k, d))
    return np.concatenate([rng.normal(size=(n // k, d)) @ rng.normal(size=(d, d)) + c for c in centers])


def _anisotropic(rng):
    X = _blobs(rng, d=4)
    return X @ np.diag([1.0, 10.0, 0.1, 3.0])


def _badly_conditioned(rng):
    # Features on scales 1e-3 .. 1e3 and an offset far from the origin.
    X = _blobs(rng, d=3)
    return X * np.array([1e-3, 1.0, 1e3]) + 1e4


def _heavy_tailed(rng):
    return rng.standard_t(df=2.5, size=(400, 2)) + np.repeat(rng.normal(scale=8, size=(4, 2)), 100, axis=0)


DATASETS = {"blobs": _blobs, "anisotropic": _anisotropic, "badly_conditioned": _badly_conditioned, "heavy_tailed": _heavy_tailed}


def _sklearn_fit(X, k, **kw):
    """scikit-learn's fit on the data centred at its mean, then moved back.

    EM commutes with translation, and centring removes the cancellation that scikit-learn's
    tied/diag formulas (E[x x^T] - m m^T around the origin) suffer for data far from the origin;
    gmmgan centres internally, so this is the like-for-like reference.
    """
    c = X.mean(0)
    if kw.get("means_init") is not None:
        kw = dict(kw, means_init=kw["means_init"] - c)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sk_mixture.GaussianMixture(k, **kw).fit(X - c)
    return ref, c


def _sklearn_init(X, k, cov_type, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        init = sk_mixture.GaussianMixture(k, covariance_type=cov_type, max_iter=0, init_params="kmeans", random_state=seed).fit(X)
    return dict(weights_init=init.weights_ / init.weights_.sum(), means_init=init.means_, precisions_init=init.precisions_)


@pytest.mark.parametrize("dataset", sorted(DATASETS))
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_float64_matches_sklearn(dataset, cov_type):
    rng = np.random.default_rng(abs(hash((dataset, cov_type))) % 2**32)
    X = DATASETS[dataset](rng)
    k = 4
    kw = _sklearn_init(X, k, cov_type, seed=0)
    common = dict(covariance_type=cov_type, max_iter=200, tol=1e-4, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = GaussianMixture(k, **common).fit(X)
    ref, c = _sklearn_fit(X, k, **common)
    assert ours.n_iter_ == ref.n_iter_
    assert ours.converged_ == ref.converged_
    assert rel_error(ours.means_, ref.means_ + c) < 1e-6
    for name in ("weights_", "covariances_", "precisions_cholesky_"):
        assert rel_error(getattr(ours, name), getattr(ref, name)) < 1e-6, name
    assert abs(ours.score(X) - ref.score(X - c)) <= 1e-6 * abs(ref.score(X - c))
    assert abs(ours.lower_bound_ - ref.lower_bound_) <= 1e-6 * abs(ref.lower_bound_)
    np.testing.assert_allclose(ours.lower_bounds_, ref.lower_bounds_, rtol=1e-6)
    np.testing.assert_allclose(ours.score_samples(X), ref.score_samples(X - c), rtol=1e-6, atol=1e-8)
    assert (ours.predict(X) == ref.predict(X - c)).mean() > 0.999


@pytest.mark.parametrize("dataset", ["blobs", "anisotropic", "heavy_tailed"])
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_float32_matches_sklearn_float64(dataset, cov_type):
    rng = np.random.default_rng(7)
    X = DATASETS[dataset](rng)
    k = 4
    kw = _sklearn_init(X, k, cov_type, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = GaussianMixture(k, covariance_type=cov_type, max_iter=30, tol=1e-3, dtype="float32", **kw).fit(X.astype(np.float32))
    ref, c = _sklearn_fit(X, k, covariance_type=cov_type, max_iter=30, tol=1e-3, **kw)
    assert ours.means_.dtype == np.float32
    assert ours.n_iter_ == ref.n_iter_
    assert rel_error(ours.means_, ref.means_ + c) < 1e-3
    for name in ("weights_", "covariances_"):
        assert rel_error(getattr(ours, name), getattr(ref, name)) < 1e-3, name
    assert abs(ours.score(X) - ref.score(X - c)) <= 1e-3 * abs(ref.score(X - c))


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_from_sklearn_inference_matches(cov_type):
    rng = np.random.default_rng(3)
    X = _blobs(rng)
    ref = sk_mixture.GaussianMixture(3, covariance_type=cov_type, random_state=0).fit(X)
    ours = GaussianMixture.from_sklearn(ref)
    np.testing.assert_allclose(ours.score_samples(X), ref.score_samples(X), rtol=1e-10)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-10)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
    assert ours.bic(X) == pytest.approx(ref.bic(X), rel=1e-10)
    assert ours.aic(X) == pytest.approx(ref.aic(X), rel=1e-10)
    back = ours.to_sklearn()
    np.testing.assert_allclose(back.score_samples(X), ref.score_samples(X), rtol=1e-12)


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_chunked_memmap_and_iterable_fits_equal_in_memory(tmp_path, cov_type):
    rng = np.random.default_rng(11)
    X = _blobs(rng, n=1000)
    kw = dict(covariance_type=cov_type, max_iter=50, tol=1e-6, random_state=0, init_params="k-means++")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = GaussianMixture(4, **kw).fit(X)
        chunked = GaussianMixture(4, chunk_size=97, **kw).fit(X)
        path = tmp_path / "x.npy"
        np.save(path, X)
        mm = GaussianMixture(4, chunk_size=128, **kw).fit(str(path))
        pieces = [X[i : i + 333] for i in range(0, len(X), 333)]
        it = GaussianMixture(4, chunk_size=128, **kw).fit(pieces)
    for other in (chunked, mm, it):
        assert other.n_iter_ == whole.n_iter_
        for name in ("weights_", "means_", "covariances_"):
            assert rel_error(getattr(other, name), getattr(whole, name)) < 1e-9, name
    assert isinstance(mm.means_, np.ndarray)


def test_torch_input_gives_torch_outputs():
    rng = np.random.default_rng(0)
    X = torch.as_tensor(_blobs(rng), dtype=torch.float32)
    gm = GaussianMixture(4, random_state=0).fit(X)
    assert isinstance(gm.means_, torch.Tensor) and gm.means_.dtype == torch.float32
    assert isinstance(gm.predict(X), torch.Tensor)
    assert isinstance(gm.predict(X.numpy()), np.ndarray)
    Xs, ys = gm.sample(10)
    assert isinstance(Xs, torch.Tensor) and Xs.shape == (10, 3)


def test_sparse_and_dense_scatter_agree():
    """The CPU's sparse scatter (skipping ~0 responsibilities) equals the dense product."""
    from gmmgan.mixture._covariance import _sparse_scatter

    gen = torch.Generator().manual_seed(0)
    y = torch.randn(5, 300, 4, generator=gen, dtype=torch.float64)
    resp = torch.zeros(300, 5, dtype=torch.float64)
    resp[torch.arange(300), torch.randint(5, (300,), generator=gen)] = 1.0
    resp[:20] = torch.softmax(torch.randn(20, 5, generator=gen, dtype=torch.float64), 1)
    resp[20:40, 0] = 1e-30  # below the cut: skipped, and far too small to matter
    dense = torch.bmm((y * resp.mT.unsqueeze(-1)).mT, y)
    sparse = _sparse_scatter(y, resp)
    assert sparse is not None
    torch.testing.assert_close(sparse, dense, rtol=1e-12, atol=1e-25)
    assert _sparse_scatter(y, torch.full((300, 5), 0.2, dtype=torch.float64)) is None


# ----------------------------------------- from the same start as scikit-learn: every fitted value
def _same_init(X, cov_type, k=3):
    """Initial weights/means/precisions from scikit-learn, to start both libraries alike."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        init = sk_mixture.GaussianMixture(k, covariance_type=cov_type, max_iter=0, random_state=0).fit(X)
    return {"weights_init": init.weights_, "means_init": init.means_, "precisions_init": init.precisions_}


def _assert_same_gm(ours, ref, X):
    assert (ours.n_iter_, ours.converged_) == (ref.n_iter_, ref.converged_)
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        assert rel_error(getattr(ours, name), getattr(ref, name)) < 1e-6, name
    assert ours.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-6)
    np.testing.assert_allclose(ours.lower_bounds_, ref.lower_bounds_, rtol=1e-6)
    assert rel_error(ours.predict_proba(X), ref.predict_proba(X)) < 1e-6
    assert rel_error(ours.score_samples(X), ref.score_samples(X)) < 1e-6
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
    for method in ("score", "bic", "aic"):
        assert getattr(ours, method)(X) == pytest.approx(getattr(ref, method)(X), rel=1e-6), method


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_gaussian_mixture_matches_sklearn_from_same_start(cov_type):
    X = blob_data()
    kw = dict(covariance_type=cov_type, tol=1e-5, **_same_init(X, cov_type))
    _assert_same_gm(fit_quietly(GaussianMixture(3, **kw), X), fit_quietly(sk_mixture.GaussianMixture(3, **kw), X), X)
    np.testing.assert_array_equal(GaussianMixture(3, **kw).fit_predict(X), sk_mixture.GaussianMixture(3, **kw).fit_predict(X))
    # max_iter=1 stops unconverged with scikit-learn's ConvergenceWarning, after the same one step.
    one = dict(kw, max_iter=1)
    with pytest.warns(sk_exceptions.ConvergenceWarning, match="did not converge"):
        ours = GaussianMixture(3, **one).fit(X)
    _assert_same_gm(ours, fit_quietly(sk_mixture.GaussianMixture(3, **one), X), X)


def test_zero_tol_and_reg_covar_match_sklearn():
    X = blob_data(10)
    kw = dict(covariance_type="full", tol=0, reg_covar=0.0, max_iter=5, **_same_init(X, "full"))
    _assert_same_gm(fit_quietly(GaussianMixture(3, **kw), X), fit_quietly(sk_mixture.GaussianMixture(3, **kw), X), X)


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_zero_reg_covar_on_collapsed_data_fails_as_sklearn(cov_type):
    """reg_covar=0 asks for no regularisation: a covariance that cannot be factored is sklearn's error."""
    X = np.vstack((np.ones((5, 5)), np.zeros((5, 5))))
    msg = re.escape("Fitting the mixture model failed because some components have ill-defined empirical covariance")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ValueError, match=msg):
            GaussianMixture(10, reg_covar=0, covariance_type=cov_type, random_state=0).fit(X)
        gm = GaussianMixture(10, reg_covar=1e-6, covariance_type=cov_type, random_state=0).fit(X)  # jitter, no error
    assert np.isfinite(gm.precisions_cholesky_).all()


@pytest.mark.parametrize("cov_type", ["full", "diag"])
def test_warm_start_chain_matches_sklearn(cov_type):
    """Each warm fit starts from the previous solution and lower bound, as scikit-learn's."""
    X = blob_data(1)
    kw = dict(covariance_type=cov_type, tol=1e-5, max_iter=2, warm_start=True, **_same_init(X, cov_type))
    ours, ref = GaussianMixture(3, **kw), sk_mixture.GaussianMixture(3, **kw)
    for _ in range(3):
        _assert_same_gm(fit_quietly(ours, X), fit_quietly(ref, X), X)


def test_n_init_keeps_the_initialisation_with_the_highest_lower_bound():
    X = blob_data(2)
    seen = []
    gm = fit_quietly(GaussianMixture(3, n_init=5, init_params="random", max_iter=5, random_state=0, callback=seen.append), X)
    runs = {}
    for s in seen:
        runs.setdefault(s["init"], []).append(s["lower_bound"])
    assert len(runs) == 5 and len({r[-1] for r in runs.values()}) > 1  # the inits differ
    best = max(runs.values(), key=lambda r: r[-1])
    assert gm.lower_bound_ == best[-1] and gm.lower_bounds_ == best and gm.n_iter_ == len(best)


class _GivenDraws(np.random.RandomState):
    """A RandomState whose draws for scikit-learn's random inits are the ones gmmgan makes."""

    def __init__(self, chosen=None, uniform=None):
        super().__init__(0)
        self._chosen, self._uniform = chosen, uniform

    def choice(self, *args, **kwargs):  # random_from_data's rows
        return self._chosen

    def uniform(self, *args, **kwargs):  # random's responsibilities
        return self._uniform.copy()


@pytest.mark.parametrize("init_params", ["random", "random_from_data"])
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_random_inits_match_sklearn_given_the_same_draws(init_params, cov_type):
    """From the same random draws both random inits start and end where scikit-learn's do.

    Data centred, as the other parity tests (tied + random_from_data sums x x^T over all rows,
    which scikit-learn does around the origin). A regression for tied + random_from_data, whose
    covariance gmmgan summed over the K drawn points only.
    """
    from gmmgan.mixture._base import make_generator

    X = blob_data(15, d=2)
    X = X - X.mean(0)
    seed, k = 5, 3
    chosen = torch.randperm(len(X), generator=make_generator(seed))[:k].numpy()
    uniform = torch.rand(len(X), k, generator=make_generator(seed), dtype=torch.float64).numpy()
    def draws():
        return _GivenDraws(chosen, uniform)
    kw = {"covariance_type": cov_type, "init_params": init_params, "tol": 1e-6}
    for max_iter in (0, 40):
        ours = fit_quietly(GaussianMixture(k, random_state=seed, max_iter=max_iter, **kw), X)
        ref = fit_quietly(sk_mixture.GaussianMixture(k, random_state=draws(), max_iter=max_iter, **kw), X)
        assert (ours.n_iter_, ours.converged_) == (ref.n_iter_, ref.converged_)
        for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
            assert rel_error(getattr(ours, name), getattr(ref, name)) < 1e-6, (max_iter, name)
    ours = fit_quietly(BayesianGaussianMixture(n_components=k, random_state=seed, max_iter=20, **kw), X)
    ref = fit_quietly(sk_mixture.BayesianGaussianMixture(n_components=k, random_state=draws(), max_iter=20, **kw), X)
    assert ours.n_iter_ == ref.n_iter_
    for name in ("weights_", "means_", "covariances_", "mean_precision_", "degrees_of_freedom_"):
        assert rel_error(getattr(ours, name), getattr(ref, name)) < 1e-6, name


@pytest.mark.parametrize("verbose", [1, 2])
def test_verbose_output_is_sklearns(capsys, verbose):
    X = blob_data(4)
    kw = dict(covariance_type="full", tol=1e-6, verbose=verbose, verbose_interval=2, **_same_init(X, "full"))
    GaussianMixture(3, **kw).fit(X)
    ours = capsys.readouterr().out
    sk_mixture.GaussianMixture(3, **kw).fit(X)
    ref = capsys.readouterr().out
    assert "  Iteration 2" in ours
    assert without_times(ours) == without_times(ref)


def test_float32_model_scores_float64_data_in_float64_as_sklearn():
    X = blob_data(13)
    ours = GaussianMixture(3, random_state=0).fit(X.astype(np.float32))
    ref = sk_mixture.GaussianMixture(3, random_state=0).fit(X.astype(np.float32))
    assert ours.means_.dtype == ref.means_.dtype == np.float32
    for data in (X, X.astype(np.float32), X.astype(np.int64)):
        for method in ("score_samples", "predict_proba"):
            assert getattr(ours, method)(data).dtype == getattr(ref, method)(data).dtype, (method, data.dtype)
    # The same float32 model in both (from_sklearn): scored in float64, not to float32's 1e-7 only.
    np.testing.assert_allclose(GaussianMixture.from_sklearn(ref).score_samples(X), ref.score_samples(X), rtol=1e-6)
    t = torch.as_tensor(X, dtype=torch.float32)
    tm = GaussianMixture(3, random_state=0).fit(t)
    assert tm.score_samples(t).dtype == torch.float32 and tm.score_samples(t.double()).dtype == torch.float64
    assert GaussianMixture(3, random_state=0, dtype="float32").fit(X).score_samples(X).dtype == np.float32  # asked for

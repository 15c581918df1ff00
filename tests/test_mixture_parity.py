"""From the same initial parameters, gmmgan's EM takes scikit-learn's steps (float64 to 1e-6)."""

import warnings

import numpy as np
import pytest
import torch

from gmmgan import GaussianMixture

sk_mixture = pytest.importorskip("sklearn.mixture")

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


def _rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


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
    assert _rel(ours.means_, ref.means_ + c) < 1e-6
    for name in ("weights_", "covariances_", "precisions_cholesky_"):
        assert _rel(getattr(ours, name), getattr(ref, name)) < 1e-6, name
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
    assert _rel(ours.means_, ref.means_ + c) < 1e-3
    for name in ("weights_", "covariances_"):
        assert _rel(getattr(ours, name), getattr(ref, name)) < 1e-3, name
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
            assert _rel(getattr(other, name), getattr(whole, name)) < 1e-9, name
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

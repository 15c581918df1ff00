"""The Triton EM kernels (backend='triton'): the same function as the float64 torch path.

GPU tests skip without CUDA or Triton; the backend parameter's validation and the CPU/no-Triton
behaviour are tested everywhere.
"""

import math
import warnings

import numpy as np
import pytest
import torch

from gmmgan import GaussianMixture
from gmmgan.mixture import _triton_em
from gmmgan.mixture._covariance import COVARIANCES
from gmmgan.mixture._em_state import log_normalize_

KERNEL_TYPES = ["diag", "spherical", "full"]


# ------------------------------------------------------------------ everywhere (CI: CPU)
def test_module_imports_without_triton_and_says_why():
    assert _triton_em.unavailable_reason("cpu", torch.float32, "diag", 4).startswith("the Triton kernels run on CUDA")
    assert "float32" in _triton_em.unavailable_reason("cuda", torch.float64, "full", 4)
    assert "tied" in _triton_em.unavailable_reason("cuda", torch.float32, "tied", 4)


def test_unknown_backend_is_a_value_error():
    with pytest.raises(ValueError, match="Unknown backend 'cuda'.*'auto', 'torch', 'triton'"):
        GaussianMixture(2, backend="cuda").fit(np.random.default_rng(0).normal(size=(50, 2)))


def test_triton_backend_where_unavailable_says_why_and_what_to_use():
    X = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(ValueError, match="backend='triton' cannot be used: .*CUDA.*backend='auto'"):
        GaussianMixture(2, backend="triton", device="cpu", dtype="float32").fit(X)
    with pytest.raises(ValueError, match="covariance_type='tied' has no Triton kernel"):
        GaussianMixture(2, covariance_type="tied", backend="triton").fit(X)


@pytest.mark.parametrize("cov_type", ["full", "diag"])
def test_auto_on_cpu_is_the_torch_path(cov_type):
    X = np.random.default_rng(1).normal(size=(300, 3))
    a = GaussianMixture(3, covariance_type=cov_type, random_state=0).fit(X)
    b = GaussianMixture(3, covariance_type=cov_type, random_state=0, backend="torch").fit(X)
    for name in ("weights_", "means_", "covariances_"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert a.lower_bound_ == b.lower_bound_


# ------------------------------------------------------------------ GPU (CUDA + Triton)
@pytest.fixture(scope="module")
def cuda():
    pytest.importorskip("triton")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    return torch.device("cuda")


def _rel(a, b):
    a, b = torch.as_tensor(a, dtype=torch.float64).cpu(), torch.as_tensor(b, dtype=torch.float64).cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def _random_params(gen, cov_type, k, d, spread):
    means = torch.randn(k, d, generator=gen, dtype=torch.float64) * spread
    weights = torch.rand(k, generator=gen, dtype=torch.float64) + 0.2
    weights /= weights.sum()
    if cov_type == "full":
        a = torch.randn(k, d, d, generator=gen, dtype=torch.float64) / math.sqrt(d)
        cov = 0.5 * a @ a.mT + 0.5 * torch.eye(d, dtype=torch.float64)
        prec_chol = COVARIANCES["full"].precision_cholesky(cov, 0.0)
    elif cov_type == "diag":
        prec_chol = (torch.rand(k, d, generator=gen, dtype=torch.float64) + 0.5).rsqrt()
    else:
        prec_chol = (torch.rand(k, generator=gen, dtype=torch.float64) + 0.5).rsqrt()
    return weights, means, prec_chol


def _reference_block(cov_type, x, means, prec_chol, log_w):
    """The torch path's block statistics in float64, in the kernels' (finalised) form."""
    cov = COVARIANCES[cov_type]
    log_prob, cache = cov.e_step_block(x, means, prec_chol)
    wlp = log_prob + log_w
    lpn, resp = log_normalize_(wlp.clone())
    stat = cov.accumulate(x, resp, means)  # full: around the anchor (means), diag: sum r x^2
    return wlp, lpn, resp.sum(0), resp.mT @ x, stat


@pytest.mark.parametrize("cov_type", KERNEL_TYPES)
@pytest.mark.parametrize("n, k, d", [(1000, 3, 5), (4099, 70, 37), (20000, 64, 64), (3000, 17, 128)])
def test_block_matches_float64(cuda, cov_type, n, k, d):
    gen = torch.Generator().manual_seed(n + k + d)
    weights, means, prec_chol = _random_params(gen, cov_type, k, d, spread=2.0)
    # Rows drawn around the components, so responsibilities are neither all 0/1 nor uniform.
    comp = torch.randint(0, k, (n,), generator=gen)
    x64 = means[comp] + torch.randn(n, d, generator=gen, dtype=torch.float64)
    x = x64.float().to(cuda)
    kern = _triton_em.resolve("triton", cuda, torch.float32, cov_type, d)
    args32 = (means.float().to(cuda), prec_chol.float().to(cuda), weights.float().log().to(cuda))
    lpn, nk, sx, stat = kern.em_block(x, *args32)
    # The reference takes the same float32 inputs, upcast: only the arithmetic differs.
    ref = _reference_block(cov_type, x.double().cpu(), *(a.double().cpu() for a in args32))
    wlp = kern.weighted_log_prob(x, *args32)
    errs = dict(lpn=_rel(lpn, ref[1]), nk=_rel(nk, ref[2]), sx=_rel(sx, ref[3]), stat=_rel(stat, ref[4]), wlp=_rel(wlp, ref[0]))
    print(f"\n{cov_type} n={n} k={k} d={d} precision={_triton_em.PRECISION[cov_type]}: " + " ".join(f"{a}={e:.1e}" for a, e in errs.items()))
    assert torch.isfinite(lpn).all() and wlp.shape == (n, k)
    # One block against float64: the per-row log-likelihood to 1e-5, the statistics to 1e-4
    # (TF32 statistics products round each factor to 11 bits; the errors average over rows).
    assert errs["lpn"] < 1e-5 and errs["wlp"] < 1e-5
    assert max(errs["nk"], errs["sx"], errs["stat"]) < 1e-4


def _dataset(kind, seed, n=24000, d=6, k=4):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(k, d))
    mix = [rng.normal(size=(d, d)) * 0.5 + np.eye(d) for _ in range(k)]
    labels = rng.integers(0, k, size=n)
    X = np.stack([centers[c] + rng.normal(size=d) @ mix[c] for c in labels])
    if kind == "offset":
        X = X + 1e4
    elif kind == "scales":
        X = X * np.logspace(-3, 3, d)
    X = X.astype(np.float32)  # both fits see the same (float32) data
    return X[: n * 5 // 6], X[n * 5 // 6 :], labels[: n * 5 // 6]


def _start(X, labels, k, cov_type):
    """Cell means/covariances of the true labels, perturbed: one start for both fits."""
    X = X.astype(np.float64)
    w = np.bincount(labels, minlength=k) / len(labels)
    mu = np.stack([X[labels == j].mean(0) for j in range(k)])
    mu = mu + 0.3 * X.std(0) * np.random.default_rng(5).normal(size=mu.shape)
    var = np.stack([X[labels == j].var(0) for j in range(k)]) * 1.5
    if cov_type == "full":
        prec = np.stack([np.diag(1 / v) for v in var])
    elif cov_type == "diag":
        prec = 1 / var
    else:
        prec = 1 / var.mean(1)
    return dict(weights_init=w, means_init=mu, precisions_init=prec)


@pytest.mark.parametrize("kind", ["well", "offset", "scales"])
@pytest.mark.parametrize("cov_type", KERNEL_TYPES)
def test_fit_matches_float64_torch(cuda, kind, cov_type):
    k = 4
    X, X_test, labels = _dataset(kind, seed=3)
    start = _start(X, labels, k, cov_type)
    common = dict(covariance_type=cov_type, tol=0.0, max_iter=25, random_state=0, **start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = GaussianMixture(k, dtype="float64", device=cuda, backend="torch", **common).fit(X.astype(np.float64))
        got = GaussianMixture(k, dtype="float32", device=cuda, backend="triton", **common).fit(X)
        f32 = GaussianMixture(k, dtype="float32", device=cuda, backend="torch", **common).fit(X)
    torch_errs = {name: _rel(getattr(f32, name), getattr(ref, name)) for name in ("weights_", "means_", "covariances_")}
    if cov_type == "full" and kind == "scales":
        # Full covariances whose features span 1e-3..1e3 (condition ~1e12) are not positive
        # definite in float32 by the M-step's test (pivots above 4 eps of the largest diagonal),
        # so any float32 fit, either backend, adds jitter there and leaves the float64 path; the
        # kernels are then held to the torch float32 path, which shares that M-step.
        ref = f32
    errs = {name: _rel(getattr(got, name), getattr(ref, name)) for name in ("weights_", "means_", "covariances_")}
    X_ref = X_test.astype(np.float64) if ref.means_.dtype == np.float64 else X_test
    ll_ref, ll = ref.score(X_ref), got.score(X_test)
    ll_gap = abs(ll - ll_ref) / abs(ll_ref)
    print(f"\n{cov_type} {kind}: triton {errs} loglik {ll_gap:.2e}; torch float32 {torch_errs} "
          f"loglik {abs(f32.score(X_test) - ll_ref) / abs(ll_ref):.2e}")
    # The contract: 1e-4 on the parameters, 1e-5 on the held-out log-likelihood. (Against the
    # jittered float32 reference of full/scales, an ill-conditioned problem, 1e-3.)
    tol = 1e-3 if ref is f32 else 1e-4
    for name, e in errs.items():
        assert e < tol, (name, e)
    assert ll_gap < 1e-5
    # Inference through the kernels too (score_samples, predict_proba, predict), against the
    # torch code on the same float32 model: per row, only the arithmetic differs. (Against the
    # float64 model per row, float32 means near 1e4 are only good to 1e-3 absolute.)
    s, p, lab = got.score_samples(X_test), got.predict_proba(X_test), got.predict(X_test)
    got.set_params(backend="torch")
    assert _rel(s, got.score_samples(X_test)) < 1e-5
    assert np.abs(p - got.predict_proba(X_test)).max() < 1e-4
    assert (lab == got.predict(X_test)).mean() > 0.999
    assert _rel(s, ref.score_samples(X_ref)) < 1e-3


def test_auto_takes_the_kernels_on_cuda_float32(cuda, monkeypatch):
    X = torch.randn(5000, 4, device=cuda)
    calls = []
    real = _triton_em._DiagKernels.em_block.__func__

    def spy(cls, *a):
        calls.append(1)
        return real(cls, *a)

    monkeypatch.setattr(_triton_em._DiagKernels, "em_block", classmethod(spy))
    GaussianMixture(3, covariance_type="diag", max_iter=3, random_state=0).fit(X)
    assert calls
    calls.clear()
    GaussianMixture(3, covariance_type="diag", max_iter=3, random_state=0, backend="torch").fit(X)
    assert not calls

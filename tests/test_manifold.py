"""Tests of gmmgan.gan.manifold: blobs recovered, determinism, transform/inverse, state_dict, bad input, sigma search."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gmmgan import GaussianMixture
from gmmgan.gan.manifold import ManifoldMap, find_ab_params, knn, smooth_knn_dist
from gmmgan.metrics.clustering import clustering_accuracy

N_BLOBS, DIM = 5, 20


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny tensors: on a shared machine a second thread mostly waits for a core.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _blobs(n=400, seed=0, spread=8.0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(N_BLOBS, DIM, generator=g) * spread
    labels = torch.arange(n) % N_BLOBS
    return centers[labels] + torch.randn(n, DIM, generator=g), labels, centers


@pytest.fixture(scope="module")
def fitted():
    x, labels, centers = _blobs()
    mm = ManifoldMap(n_components=3, n_neighbors=15, n_epochs=60, seed=0)
    coords = mm.fit_transform(x)
    return mm, x, labels, centers, coords


def _gmm_labels(z):
    return GaussianMixture(N_BLOBS, covariance_type="full", random_state=0).fit(z.double()).predict(z.double())


def test_blobs_are_recovered_by_a_gmm_on_the_coordinates(fitted):
    mm, x, labels, _, coords = fitted
    assert coords.shape == (x.shape[0], 3) and coords.dtype == torch.float32
    assert mm.fitted and mm.codes.shape == (x.shape[0], DIM) and mm.coords.shape == (x.shape[0], 3)
    assert clustering_accuracy(labels.numpy(), _gmm_labels(coords).numpy()) == 1.0


def test_same_seed_same_coordinates_other_seed_other_coordinates(fitted):
    mm, x, _, _, coords = fitted
    again = ManifoldMap(n_components=3, n_neighbors=15, n_epochs=60, seed=0).fit_transform(x)
    assert torch.equal(again, coords)
    other = ManifoldMap(n_components=3, n_neighbors=15, n_epochs=60, seed=1).fit_transform(x)
    assert not torch.allclose(other, coords)


def test_transform_of_training_points_lands_in_their_own_cluster(fitted):
    mm, x, labels, _, coords = fitted
    t = mm.transform(x)
    assert t.shape == coords.shape
    # The nearest training coordinate of each transformed point belongs to the same blob.
    nearest = torch.cdist(t, coords).argmin(1)
    assert torch.equal(labels[nearest], labels)
    # And it sits much closer to its own coordinate than clusters are to each other.
    assert (t - coords).norm(dim=1).median() < 0.2 * torch.cdist(coords, coords).max()


def test_transform_of_new_points_and_inverse_back_to_code_space(fitted):
    mm, x, labels, centers, coords = fitted
    new_labels = torch.arange(100) % N_BLOBS
    new = centers[new_labels] + torch.randn(100, DIM, generator=torch.Generator().manual_seed(5))
    t = mm.transform(new)
    assert torch.equal(labels[torch.cdist(t, coords).argmin(1)], new_labels)
    back = mm.inverse(t)
    assert back.shape == (100, DIM)
    assert torch.equal(torch.cdist(back, centers).argmin(1), new_labels)


def test_state_dict_round_trip_gives_the_same_transform(fitted):
    mm, x, _, _, _ = fitted
    fresh = ManifoldMap(n_components=3, n_neighbors=15, n_epochs=60, seed=0)
    assert not fresh.fitted
    fresh.load_state_dict(mm.state_dict())
    assert fresh.fitted
    assert torch.equal(fresh.transform(x[:50]), mm.transform(x[:50]))
    assert torch.equal(fresh.inverse(mm.coords[:20]), mm.inverse(mm.coords[:20]))


def test_max_stored_keeps_a_seeded_subset_and_callback_reports_progress():
    x, labels, _ = _blobs(n=300)
    calls = []
    mm = ManifoldMap(n_components=2, n_neighbors=10, n_epochs=20, max_stored=100)
    coords = mm.fit_transform(x, callback=lambda done, total: calls.append((done, total)))
    assert coords.shape == (300, 2) and mm.codes.shape == (100, DIM) and mm.coords.shape == (100, 2)
    rows = torch.cdist(mm.codes, x).argmin(1)
    assert torch.equal(mm.coords, coords[rows])
    assert calls[-1] == (20, 20) and len(calls) >= 5 and all(t == 20 for _, t in calls)


def test_duplicates_and_a_failed_spectral_start(monkeypatch):
    x, labels, _ = _blobs(n=100)
    x = x.repeat(3, 1)  # every point three times: zero neighbour distances
    coords = ManifoldMap(n_components=2, n_neighbors=10, n_epochs=30).fit_transform(x)
    assert bool(torch.isfinite(coords).all())
    monkeypatch.setattr("gmmgan.gan.manifold._spectral_init", lambda *a, **k: None)
    with pytest.warns(RuntimeWarning, match="spectral initialisation failed; starting from a random layout"):
        coords = ManifoldMap(n_components=2, n_neighbors=10, n_epochs=30).fit_transform(x)
    assert bool(torch.isfinite(coords).all())


def test_find_ab_params_matches_umap_values():
    # umap-learn's find_ab_params (scipy's curve_fit) gives these for spread=1.
    assert find_ab_params(0.1) == pytest.approx((1.5769, 0.8951), abs=1e-3)
    assert find_ab_params(0.001) == pytest.approx((1.9291, 0.7915), abs=1e-3)


def test_knn_is_exact():
    g = torch.Generator().manual_seed(0)
    ref, q = torch.randn(500, 8, generator=g), torch.randn(70, 8, generator=g)
    dist, idx = knn(q, ref, 7, max_entries=3000)  # several chunks
    full = torch.cdist(q, ref)
    expected = full.topk(7, largest=False)
    assert torch.equal(idx, expected.indices)
    assert torch.allclose(dist, expected.values, atol=1e-5)
    dist_self, idx_self = knn(ref, ref, 3, exclude_self=True, max_entries=10_000)
    assert not bool((idx_self == torch.arange(500)[:, None]).any())


@settings(max_examples=40, deadline=None)
@given(k=st.integers(2, 40), seed=st.integers(0, 10_000), scale=st.floats(1e-3, 1e3))
def test_sigma_search_meets_its_target(k, seed, scale):
    g = torch.Generator().manual_seed(seed)
    dist = (torch.rand(16, k, generator=g, dtype=torch.float64) + 0.05).sort(1).values * scale
    target = math.log2(k + 1)
    rho, sigma = smooth_knn_dist(dist, target)
    assert torch.equal(rho, dist[:, 0])
    t = dist - rho[:, None]
    psum = torch.where(t > 0, torch.exp(-t / sigma[:, None]), torch.ones_like(t)).sum(1)
    floored = sigma <= 1e-3 * dist.mean(1) * (1 + 1e-9)
    assert bool((((psum - target).abs() < 1e-6 * target) | floored).all())


def test_bad_inputs_raise_helpful_errors(fitted):
    mm = fitted[0]
    x = _blobs(n=60)[0]
    with pytest.raises(ValueError, match="2-D tensor"):
        ManifoldMap(n_components=2).fit(x[0])
    with pytest.raises(ValueError, match="2-D tensor"):
        ManifoldMap(n_components=2).fit(x.numpy())
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        ManifoldMap(n_components=2, n_neighbors=5).fit(bad)
    bad[3, 1] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite"):
        ManifoldMap(n_components=2, n_neighbors=5).fit(bad)
    with pytest.raises(ValueError, match="at least 21.*smaller n_neighbors"):
        ManifoldMap(n_components=2, n_neighbors=20).fit(x[:20])
    with pytest.raises(ValueError, match="less than the code dimension 20"):
        ManifoldMap(n_components=20, n_neighbors=5).fit(x)
    for kwargs, pattern in (({"n_components": 0}, "n_components"), ({"n_neighbors": 1}, "n_neighbors"),
                            ({"n_epochs": 0}, "n_epochs"), ({"min_dist": -0.1}, "min_dist"),
                            ({"max_stored": 10, "n_neighbors": 20}, "max_stored")):
        with pytest.raises(ValueError, match=pattern):
            ManifoldMap(**kwargs)
    fresh = ManifoldMap(n_components=3)
    with pytest.raises(ValueError, match=r"not fitted yet; call fit\(codes\) before transform"):
        fresh.transform(x)
    with pytest.raises(ValueError, match=r"not fitted yet; call fit\(codes\) before inverse"):
        fresh.inverse(torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"has 19 features .* fitted on 20"):
        mm.transform(x[:, :19])
    with pytest.raises(ValueError, match=r"has 2 features .* fitted on 3"):
        mm.inverse(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="NaN or infinite"):
        mm.transform(bad)

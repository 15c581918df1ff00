"""FID / KID (torchmetrics on classifier features) against closed forms, and the evaluate helper."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gmmgan.metrics.classifier import ClassifierConfig, FeatureClassifier
from gmmgan.metrics.evaluate import feature_metrics, image_metrics
from gmmgan.metrics.fid import ClassifierFeatures, fid_metric, frechet_distance, kernel_distance, kid_metric


def _gauss(n, d, seed, mean=0.0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return mean + scale * torch.randn(n, d, generator=g, dtype=torch.float64)


def _fid_scipy(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_identical_features_give_zero_fid():
    x = _gauss(500, 16, 0)
    assert abs(frechet_distance(x, x)) < 1e-6


def test_fid_matches_scipy_on_sample_statistics():
    a, b = _gauss(800, 6, 1), _gauss(700, 6, 2, mean=0.3, scale=1.5)
    assert frechet_distance(a, b) == pytest.approx(_fid_scipy(a.numpy(), b.numpy()), rel=1e-6)


def test_fid_of_shifted_scaled_gaussians_matches_closed_form():
    # N(0, I) vs N(mu, s^2 I) in d dims: |mu|^2 + d (1 - s)^2
    d, s = 4, 1.5
    mu = torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=torch.float64)
    a, b = _gauss(40000, d, 3), mu + s * _gauss(40000, d, 4)
    expected = float(mu @ mu) + d * (1 - s) ** 2
    assert frechet_distance(a, b) == pytest.approx(expected, abs=0.05)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), shift=st.floats(-5, 5), d=st.integers(1, 6))
def test_fid_properties(seed, shift, d):
    a, b = _gauss(60, d, seed), _gauss(50, d, seed + 1, mean=0.5)
    f = frechet_distance(a, b)
    assert f > -1e-6
    assert frechet_distance(b, a) == pytest.approx(f, rel=1e-6, abs=1e-8)
    assert frechet_distance(a + shift, b + shift) == pytest.approx(f, rel=1e-6, abs=1e-8)


def test_kid_same_distribution_is_near_zero_and_shift_is_not():
    a, b = _gauss(600, 8, 5), _gauss(600, 8, 6)
    mean, std = kernel_distance(a, b, subsets=10, subset_size=300)
    assert abs(mean) < 3 * std  # subsets overlap, so std (not std / sqrt(subsets)) is the scale of the noise
    far, _ = kernel_distance(a, b + 1.0, subsets=10, subset_size=300)
    assert far > 0.1 and far > 10 * abs(mean)


def test_kid_is_seeded_and_leaves_the_global_rng_alone():
    a, b = _gauss(300, 4, 7), _gauss(300, 4, 8, mean=0.2)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    assert kernel_distance(a, b, subsets=10, subset_size=100, seed=3) == kernel_distance(a, b, subsets=10, subset_size=100, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    # subset_size larger than a set is lowered to the set's size rather than failing
    assert kernel_distance(a[:50], b, subsets=2, subset_size=1000)[0] == pytest.approx(
        kernel_distance(a[:50], b, subsets=2, subset_size=50)[0]
    )


@pytest.fixture(scope="module")
def tiny_classifier():
    torch.manual_seed(0)
    clf = FeatureClassifier(ClassifierConfig(width=4, feature_dim=8)).eval()
    clf.info = {"dataset": "mnist", "test_accuracy": 0.5, "sha256": "ab" * 32}
    return clf


def _images(n, seed, bright=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 28, 28, generator=g) * 255 * bright).to(torch.uint8)


def test_torchmetrics_with_classifier_features_matches_feature_path(tiny_classifier):
    real, fake = _images(64, 0), _images(48, 1, bright=0.5)
    expected = frechet_distance(tiny_classifier.features(real), tiny_classifier.features(fake))
    for as_float in (False, True):  # torchmetrics may hand the module uint8 or [0, 1] floats
        m = fid_metric(tiny_classifier)
        m.update(real.float().div(255).unsqueeze(1) if as_float else real.unsqueeze(1), real=True)
        m.update(fake.float().div(255).unsqueeze(1) if as_float else fake.unsqueeze(1), real=False)
        assert float(m.compute()) == pytest.approx(expected, rel=1e-4)
    k = kid_metric(tiny_classifier, subsets=3, subset_size=20)
    k.update(real.unsqueeze(1), real=True)
    k.update(fake.unsqueeze(1), real=False)
    assert math.isfinite(float(k.compute()[0]))
    assert ClassifierFeatures(tiny_classifier).num_features == 8


def test_image_metrics_reports_model_and_reference(tiny_classifier):
    real, ref, fake = _images(120, 2), _images(60, 3), _images(60, 4, bright=0.3)
    rep = image_metrics(fake, real, tiny_classifier, reference_images=ref, kid_subsets=5, kid_subset_size=50)
    assert rep.reference.fid < rep.model.fid  # held-out real images look more real than dim noise
    assert rep.model.n_fake == 60 and rep.model.n_real == 120 and rep.reference.n_fake == 60
    text = rep.format()
    for name in ("fid", "kid_mean", "precision", "recall", "density", "coverage", "real-vs-real", "test accuracy 0.5000"):
        assert name in text
    assert rep.as_dict()["feature_network"]["dataset"] == "mnist"
    with pytest.warns(UserWarning, match="only comparable at equal counts"):
        image_metrics(fake[:30], real, tiny_classifier, reference_images=ref, kid_subsets=2, kid_subset_size=20)


def test_feature_metrics_identical_sets():
    x = _gauss(300, 5, 9)
    m = feature_metrics(x, x, kid_subsets=5, kid_subset_size=100)
    assert abs(m.fid) < 1e-6 and m.precision == m.recall == m.coverage == 1.0 and m.density == pytest.approx(1.0)


def test_feature_metrics_prdc_uses_equal_counts():
    # two samples of one distribution, equal counts: E[coverage] = 1 - 2^-k (Naeem et al., 2020)
    real, fake = _gauss(3000, 4, 10), _gauss(800, 4, 11)
    m = feature_metrics(real, fake, kid_subsets=2, kid_subset_size=100, prdc_samples=10_000)
    assert m.n_prdc == 800 and (m.n_real, m.n_fake) == (3000, 800)
    assert abs(m.coverage - (1 - 2**-5)) < 0.03
    assert feature_metrics(real, fake, kid_subsets=2, kid_subset_size=100, prdc_samples=500).n_prdc == 500


@pytest.mark.parametrize(
    "real, fake, match",
    [
        (torch.zeros(10, 4), torch.zeros(10, 5), "10 columns|4 columns but fake_features have 5"),
        (torch.zeros(1, 4), torch.zeros(10, 4), "real_features has 1 rows"),
        (torch.zeros(0, 4), torch.zeros(10, 4), "real_features is empty"),
        (torch.zeros(10), torch.zeros(10, 4), "real_features must be 2-D"),
    ],
)
def test_bad_features(real, fake, match):
    for fn in (frechet_distance, kernel_distance, feature_metrics):
        with pytest.raises(ValueError, match=match):
            fn(real, fake)


def test_bad_classifier():
    with pytest.raises(ValueError, match="must be a gmmgan FeatureClassifier"):
        fid_metric(torch.nn.Identity())
    with pytest.raises(ValueError, match="must be a gmmgan FeatureClassifier"):
        image_metrics(_images(4, 0), _images(4, 1), torch.nn.Identity())

"""Clustering accuracy (Hungarian) and NMI, checked against scikit-learn and known cases."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import normalized_mutual_info_score

from gmmgan.metrics.clustering import (
    clustering_accuracy,
    clustering_scores,
    component_clustering,
    normalized_mutual_info,
)


def test_permuted_perfect_labeling_scores_one():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 1000)
    perm = rng.permutation(10) + 100  # cluster ids need not be 0..K-1
    s = clustering_scores(y, perm[y])
    assert s.accuracy == 1.0 and s.nmi == pytest.approx(1.0)
    assert s.mapping == {int(perm[k]): k for k in range(10)}
    assert (s.n_classes, s.n_clusters, s.n_samples) == (10, 10, 1000)


def test_random_labeling_scores_about_one_over_k():
    rng = np.random.default_rng(1)
    y, c = rng.integers(0, 10, 20000), rng.integers(0, 10, 20000)
    assert 0.095 < clustering_accuracy(y, c) < 0.115  # the best of 10! matchings sits a little above 1/K
    assert normalized_mutual_info(y, c) < 0.005


def test_known_small_case():
    y = [0, 0, 0, 1, 1, 1]
    c = [1, 1, 0, 0, 0, 0]  # best map: 1->0, 0->1: 5 of 6 right
    assert clustering_accuracy(y, c) == pytest.approx(5 / 6)
    # more clusters than classes: the unmatched cluster's samples are errors
    assert clustering_accuracy([0, 0, 1, 1], [0, 1, 2, 2]) == pytest.approx(3 / 4)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 8)), min_size=1, max_size=200))
def test_nmi_matches_sklearn(pairs):
    y, c = np.array(pairs).T
    assert normalized_mutual_info(y, c) == pytest.approx(normalized_mutual_info_score(y, c), abs=1e-10)
    acc = clustering_accuracy(y, c)
    # the best one-to-one map is at least as good as matching the single largest (class, cluster) cell
    largest_cell = max(np.sum((y == a) & (c == b)) for a, b in pairs)
    assert largest_cell / len(y) - 1e-12 <= acc <= 1


def test_edge_cases_follow_sklearn():
    assert normalized_mutual_info([3, 3, 3], [1, 1, 1]) == 1.0 == normalized_mutual_info_score([3, 3, 3], [1, 1, 1])
    assert normalized_mutual_info([0, 1, 2], [5, 5, 5]) == 0.0 == normalized_mutual_info_score([0, 1, 2], [5, 5, 5])
    assert clustering_accuracy(torch.tensor([4]), torch.tensor([9])) == 1.0


class ReadDigit(torch.nn.Module):
    """Fake classifier: the class is the image's brightness level (0..9)."""

    def predict(self, images, batch_size=1024):
        x = torch.as_tensor(images).float()
        return (x.mean(dim=tuple(range(1, x.ndim))) / 255 * 9).round().long()


def test_component_clustering_with_a_fake_classifier():
    comps = torch.arange(10).repeat_interleave(20)
    digit = (comps + 3) % 10  # each component generates one digit, relabelled
    digit[::20] = (digit[::20] + 1) % 10  # one image in 20 goes wrong
    images = (digit.float() / 9 * 255).round().to(torch.uint8)[:, None, None].expand(-1, 28, 28)
    s = component_clustering(images, comps, ReadDigit())
    assert s.accuracy == pytest.approx(0.95)
    assert s.mapping == {k: (k + 3) % 10 for k in range(10)}


@pytest.mark.parametrize(
    "y, c, match",
    [
        ([0, 1, 2], [0, 1], "labels_true has 3 entries but labels_pred has 2"),
        ([], [], "labels_true is empty"),
        ([[0, 1]], [[0, 1]], "must be 1-D"),
        ([0, -1], [0, 1], "non-negative"),
        ([0.5, 1], [0, 1], "integer labels"),
    ],
)
def test_bad_labels(y, c, match):
    for fn in (clustering_accuracy, normalized_mutual_info, clustering_scores):
        with pytest.raises(ValueError, match=match):
            fn(y, c)


def test_component_clustering_bad_inputs():
    with pytest.raises(ValueError, match="one label per image"):
        component_clustering(torch.zeros(5, 28, 28, dtype=torch.uint8), [0, 1], ReadDigit())
    with pytest.raises(ValueError, match="predict"):
        component_clustering(torch.zeros(2, 28, 28, dtype=torch.uint8), [0, 1], torch.nn.Identity())


def test_string_labels_are_a_value_error():
    with pytest.raises(ValueError, match="labels_true must hold integer labels"):
        clustering_accuracy(["a", "b"], [0, 1])

"""Clustering accuracy (Hungarian matching) and normalised mutual information.

Used to score per-component generation (docs/protocols.md, section 'Image metrics'; ClusterGAN's protocol, Mukherjee et
al., AAAI 2019): generate from each mixture component k, label every image with the dataset's
classifier, and compare the component indices (the "clusters") with the predicted classes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from gmmgan.metrics._common import as_label_tensor

__all__ = [
    "ClusteringScores",
    "clustering_accuracy",
    "clustering_scores",
    "component_clustering",
    "normalized_mutual_info",
]


def _contingency(labels_true, labels_pred) -> np.ndarray:
    """Counts (n_classes_present, n_clusters_present) over the labels that occur."""
    t = as_label_tensor(labels_true, "labels_true")
    p = as_label_tensor(labels_pred, "labels_pred")
    if t.shape[0] != p.shape[0]:
        raise ValueError(
            f"labels_true has {t.shape[0]} entries but labels_pred has {p.shape[0]}; pass one of each per sample."
        )
    _, ti = torch.unique(t, return_inverse=True)
    _, pi = torch.unique(p, return_inverse=True)
    n_t, n_p = int(ti.max()) + 1, int(pi.max()) + 1
    counts = torch.bincount(ti * n_p + pi, minlength=n_t * n_p).reshape(n_t, n_p)
    return counts.numpy().astype(np.float64)


def _hungarian(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Imported on use: scipy.optimize is slow to load.
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment(c, maximize=True)


def clustering_accuracy(labels_true, labels_pred) -> float:
    """Best accuracy over one-to-one maps from clusters to classes (Hungarian algorithm).

    ACC = max over injective maps m of (1/N) sum_i 1[labels_true_i = m(labels_pred_i)], solved
    exactly with :func:`scipy.optimize.linear_sum_assignment` on the contingency table. With more
    clusters than classes, the clusters left unmatched count as errors (no many-to-one merging).

    Parameters
    ----------
    labels_true : array-like of int, shape (n_samples,)
        Class of each sample (non-negative integers; any values, they need not be 0..K-1).
    labels_pred : array-like of int, shape (n_samples,)
        Cluster (e.g. mixture component) of each sample.

    Returns
    -------
    float in (0, 1]
    """
    c = _contingency(labels_true, labels_pred)
    rows, cols = _hungarian(c)
    return float(c[rows, cols].sum() / c.sum())


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def normalized_mutual_info(labels_true, labels_pred) -> float:
    """Normalised mutual information, MI / ((H(true) + H(pred)) / 2), natural logs.

    The arithmetic-mean normalisation (scikit-learn's default ``average_method='arithmetic'``);
    two single-cluster labelings score 1, and a labeling that carries no information about the
    other scores 0, as in :func:`sklearn.metrics.normalized_mutual_info_score`.

    Parameters
    ----------
    labels_true, labels_pred : array-like of int, shape (n_samples,)

    Returns
    -------
    float in [0, 1]

    References
    ----------
    Strehl and Ghosh, "Cluster ensembles", JMLR 2002; Vinh, Epps and Bailey, JMLR 2010.
    """
    c = _contingency(labels_true, labels_pred)
    if c.shape[0] == c.shape[1] == 1:
        return 1.0  # nothing is split: both labelings agree trivially
    n = c.sum()
    a, b = c.sum(axis=1), c.sum(axis=0)
    i, j = np.nonzero(c)
    nij = c[i, j]
    mi = max(float((nij / n * (np.log(nij) + math.log(n) - np.log(a[i]) - np.log(b[j]))).sum()), 0.0)
    if mi == 0.0:
        return 0.0
    normalizer = max((_entropy(a) + _entropy(b)) / 2, np.finfo(np.float64).eps)
    return min(mi / normalizer, 1.0)


@dataclass(frozen=True)
class ClusteringScores:
    """Result of :func:`clustering_scores`.

    ``mapping`` sends each matched cluster to its class (the Hungarian assignment).
    """

    accuracy: float
    nmi: float
    n_samples: int
    n_classes: int
    n_clusters: int
    mapping: dict[int, int]

    def as_dict(self) -> dict:
        return asdict(self)


def clustering_scores(labels_true, labels_pred) -> ClusteringScores:
    """Accuracy (Hungarian) and NMI together, with the cluster -> class assignment."""
    t = as_label_tensor(labels_true, "labels_true")
    p = as_label_tensor(labels_pred, "labels_pred")
    c = _contingency(t, p)
    rows, cols = _hungarian(c)
    classes, clusters = torch.unique(t).tolist(), torch.unique(p).tolist()
    return ClusteringScores(
        accuracy=float(c[rows, cols].sum() / c.sum()),
        nmi=normalized_mutual_info(t, p),
        n_samples=int(t.shape[0]),
        n_classes=len(classes),
        n_clusters=len(clusters),
        mapping={int(clusters[j]): int(classes[i]) for i, j in zip(rows, cols)},
    )


def component_clustering(images, components, classifier: nn.Module, batch_size: int = 1024) -> ClusteringScores:
    """Score per-component generation: do images from one mixture component share one class?

    Parameters
    ----------
    images : Tensor or array of shape (n_samples, 28, 28) or (n_samples, 1, 28, 28)
        Generated images (uint8, or float in [0, 1]), e.g. ``sample --component k`` for each k.
    components : array-like of int, shape (n_samples,)
        The component each image was generated from.
    classifier : FeatureClassifier
        Labels the images (``load_classifier(dataset)``).

    Returns
    -------
    ClusteringScores
        Accuracy and NMI between the classifier's labels (as the truth) and the components.
    """
    if not hasattr(classifier, "predict"):
        raise ValueError(
            f"classifier must have a predict(images) method (a gmmgan FeatureClassifier), got {type(classifier).__name__}."
        )
    comps = as_label_tensor(components, "components")
    n_images = len(images)
    if n_images != comps.shape[0]:
        raise ValueError(f"{n_images} images but {comps.shape[0]} component labels; pass one label per image.")
    predicted = classifier.predict(images, batch_size=batch_size).cpu()
    return clustering_scores(predicted, comps)

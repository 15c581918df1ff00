"""feature_names_in_ (gmmgan.mixture._feature_names): kept from named columns, checked, saved, as in scikit-learn."""

import numpy as np
import pytest
from _helpers import blob_data

from gmmgan import BayesianGaussianMixture, GaussianMixture

ESTIMATORS = [GaussianMixture, BayesianGaussianMixture]


class _FakeFrame:
    """The little of a pandas DataFrame that feature names need (pandas is not a dependency)."""

    __module__ = "pandas.core.frame"

    def __init__(self, values, columns):
        self.values, self.columns = np.asarray(values), list(columns)
        self.shape = self.values.shape

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_feature_names_in_as_sklearn(cls):
    X = blob_data(12)
    frame = _FakeFrame(X, ["a", "b", "c"])
    est = cls(n_components=2, random_state=0).fit(frame)
    np.testing.assert_array_equal(est.feature_names_in_, np.array(["a", "b", "c"], dtype=object))
    np.testing.assert_array_equal(est.predict(frame), cls(n_components=2, random_state=0).fit(X).predict(X))
    with pytest.warns(UserWarning, match=f"X does not have valid feature names, but {cls.__name__} was fitted with feature names"):
        est.score_samples(X)
    with pytest.raises(ValueError, match="The feature names should match those that were passed during fit.\nFeature names unseen"):
        est.predict(_FakeFrame(X, ["a", "b", "z"]))
    with pytest.raises(ValueError, match="must be in the same order"):
        est.predict_proba(_FakeFrame(X, ["c", "b", "a"]))
    with pytest.raises(TypeError, match="only supported if all input features have string names"):
        cls(n_components=2).fit(_FakeFrame(X, ["a", 1, "c"]))
    est.fit(X)  # refitted without names: the attribute goes, and named data warns
    assert not hasattr(est, "feature_names_in_")
    with pytest.warns(UserWarning, match=f"X has feature names, but {cls.__name__} was fitted without feature names"):
        est.predict(frame)
    assert not hasattr(cls(n_components=2).fit(_FakeFrame(X, [0, 1, 2])), "feature_names_in_")  # int names: none kept


def test_feature_names_survive_from_and_to_sklearn():
    pytest.importorskip("sklearn")
    X = blob_data(14)
    gm = GaussianMixture(2, random_state=0).fit(_FakeFrame(X, ["a", "b", "c"]))
    back = GaussianMixture.from_sklearn(gm.to_sklearn())
    np.testing.assert_array_equal(back.feature_names_in_, gm.feature_names_in_)
    with pytest.raises(ValueError, match="feature names should match"):
        back.predict(_FakeFrame(X, ["a", "b", "z"]))


def test_feature_names_survive_save_and_load(tmp_path):
    X = blob_data(15)
    gm = GaussianMixture(2, random_state=0).fit(_FakeFrame(X, ["a", "b", "c"]))
    back = GaussianMixture.load(gm.save(tmp_path / "m.safetensors"))
    np.testing.assert_array_equal(back.feature_names_in_, np.array(["a", "b", "c"], dtype=object))
    with pytest.raises(ValueError, match="feature names should match"):
        back.predict(_FakeFrame(X, ["a", "b", "z"]))
    plain = GaussianMixture.load(GaussianMixture(2, random_state=0).fit(X).save(tmp_path / "p.safetensors"))
    assert not hasattr(plain, "feature_names_in_")

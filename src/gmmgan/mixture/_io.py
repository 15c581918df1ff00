"""Saving, loading and converting fitted mixtures: safetensors files, scikit-learn, torch.distributions.

Files are safetensors (no pickle, so loading an untrusted file cannot run code) with the
estimator's parameters and fitted scalars as JSON in the header metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from gmmgan._files import atomic_write

FORMAT = "gmmgan.GaussianMixture"
FORMAT_VERSION = "1"
_ARRAYS = ("weights_", "means_", "covariances_", "precisions_cholesky_")
# Constructor parameters that are plain values; init arrays and callables are not saved.
_SAVED_PARAMS = (
    "n_components", "covariance_type", "tol", "reg_covar", "max_iter", "n_init", "init_params",
    "warm_start", "verbose", "verbose_interval", "chunk_size",
)


def _json_float(x):
    x = float(x)
    return x if np.isfinite(x) else str(x)



def _check_contents(model, fitted: dict, arrays: dict, corrupt) -> None:
    """The arrays of a model file are one valid mixture, and agree with its parameters (a file edited by hand).

    The checks are those the constructor's ``*_init`` arrays get (:mod:`gmmgan.mixture._validation`),
    each error naming the field; ``corrupt(what)`` makes the error.
    """
    from gmmgan.mixture import _validation

    for field, t in arrays.items():
        if t.dtype not in (torch.float32, torch.float64):
            raise corrupt(f"field {field!r} holds {str(t.dtype).replace('torch.', '')} numbers; a model's arrays "
                          "are float32 or float64")
    dtypes = {field: str(t.dtype).replace("torch.", "") for field, t in arrays.items()}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{field!r} {dt}" for field, dt in dtypes.items())
        raise corrupt(f"its arrays mix dtypes ({listed}); all must be float32 or all float64")
    for field, t in arrays.items():
        if not bool(torch.isfinite(t).all()):
            raise corrupt(f"field {field!r} holds NaN or infinite parameters")
    k, d = arrays["means"].shape
    n_components = model.n_components
    if not (isinstance(n_components, str) and n_components == "auto"):
        if n_components != k:
            raise corrupt(f"field 'n_components' (params) is {n_components!r} but the arrays hold {k} components")
        try:
            _validation.check_parameters(model)
        except ValueError as err:
            raise corrupt(f"field 'params': {str(err).rstrip('.')}") from None
    if "n_features_in_" in fitted and fitted["n_features_in_"] != d:
        raise corrupt(f"field 'n_features_in_' (fitted) is {fitted['n_features_in_']!r} but the means have {d} features")
    names = fitted.get("feature_names_in_")
    if names is not None and len(names) != d:
        raise corrupt(f"field 'feature_names_in_' (fitted) has {len(names)} names but the means have {d} features")
    ct, dtype, cpu = model.covariance_type, arrays["means"].dtype, torch.device("cpu")
    checks = (
        ("weights", lambda t: _validation.check_weights(t, k, dtype, cpu, name="weights", check_finite=False)),
        ("covariances", lambda t: _validation.check_covariances(t, ct, k, d, dtype, cpu, check_finite=False)),
        ("precisions_cholesky", lambda t: _validation.check_precisions_cholesky(t, ct, k, d, dtype, cpu, check_finite=False)),
    )
    for field, check in checks:
        try:
            check(arrays[field])
        except ValueError as err:
            raise corrupt(f"field {field!r}: {str(err).rstrip('.')}") from None
    try:
        _validation.check_covariances_match(arrays["covariances"], arrays["precisions_cholesky"], ct, d)
    except ValueError as err:
        raise corrupt(f"fields 'covariances' and 'precisions_cholesky': {str(err).rstrip('.')}") from None


class MixtureIOMixin:
    """save / load / to_distribution / from_sklearn / to_sklearn for GaussianMixture."""

    def save(self, path) -> Path:
        """Write the fitted model to ``path`` (safetensors + JSON metadata), atomically.

        The file is written to a temporary name and renamed, so an interrupted save never leaves
        a half-written model where a good one was.
        """
        from safetensors.torch import save_file

        self._check_is_fitted()
        path = Path(path)
        if path.is_dir():
            raise IsADirectoryError(f"{str(path)!r} is a folder; give a file name such as {str(path / 'model.safetensors')!r}.")
        tensors = {name.rstrip("_"): torch.as_tensor(getattr(self, name)).detach().cpu().contiguous() for name in _ARRAYS}
        params = {name: getattr(self, name) for name in _SAVED_PARAMS}
        rs = self.random_state
        params["random_state"] = rs if isinstance(rs, int) and not isinstance(rs, bool) else None
        params["dtype"] = str(tensors["means"].dtype).replace("torch.", "")
        fitted = {
            "converged_": bool(self.converged_),
            "n_iter_": int(self.n_iter_),
            "lower_bound_": _json_float(self.lower_bound_),
            "lower_bounds_": [_json_float(v) for v in getattr(self, "lower_bounds_", [])],
            "n_features_in_": int(self.n_features_in_),
            "array_kind": "torch" if isinstance(self.means_, torch.Tensor) else "numpy",
        }
        if getattr(self, "feature_names_in_", None) is not None:  # fitted on a dataframe
            fitted["feature_names_in_"] = [str(v) for v in self.feature_names_in_]
        metadata = {"format": FORMAT, "version": FORMAT_VERSION, "params": json.dumps(params), "fitted": json.dumps(fitted)}
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
        return path

    @classmethod
    def load(cls, path, device=None, array_kind=None):
        """Read a model written by :meth:`save`.

        Parameters
        ----------
        path : str or Path
        device : str or torch.device, optional
            Where tensors go if the model holds torch tensors (default: CPU).
        array_kind : {'numpy', 'torch'}, optional
            Override the kind of the fitted arrays (default: as saved).
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file, safe_open

        path = Path(path)
        if array_kind not in (None, "numpy", "torch"):
            raise ValueError(f"array_kind must be 'numpy', 'torch' or None, got {array_kind!r}.")
        if path.is_dir():
            raise IsADirectoryError(f"{str(path)!r} is a folder, not a model file; give the .safetensors file written by save.")
        if not path.is_file():
            raise FileNotFoundError(f"Model file {str(path)!r} does not exist; write one with GaussianMixture.save or `gmmgan fit -o`.")
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise ValueError(
                f"{str(path)!r} is not a readable safetensors file ({err}); it may be truncated or "
                "corrupt. Re-create it with GaussianMixture.save or `gmmgan fit -o`."
            ) from None
        if metadata.get("format") != FORMAT:
            raise ValueError(
                f"{str(path)!r} is a safetensors file but not a gmmgan GaussianMixture "
                f"(format {metadata.get('format')!r})."
            )
        if metadata.get("version") != FORMAT_VERSION:
            raise ValueError(f"{str(path)!r} has format version {metadata.get('version')!r}; this gmmgan reads {FORMAT_VERSION}.")
        missing = [n.rstrip("_") for n in _ARRAYS if n.rstrip("_") not in tensors]
        if missing:
            raise ValueError(f"{str(path)!r} lacks the arrays {missing}; the file is corrupt.")
        from gmmgan.mixture._covariance import COVARIANCES

        def corrupt(what: str) -> ValueError:
            return ValueError(f"{str(path)!r} is corrupt: {what}. Re-create it with GaussianMixture.save or `gmmgan fit -o`.")

        try:
            params, fitted = json.loads(metadata["params"]), json.loads(metadata["fitted"])
            model = cls(**params)
            if not isinstance(fitted, dict):
                raise TypeError("the fitted attributes are not a JSON object")
        except (KeyError, TypeError, ValueError) as err:
            raise corrupt(f"unreadable parameters ({type(err).__name__}: {err})") from None
        w, m, c, pc = (tensors[name.rstrip("_")] for name in _ARRAYS)
        cov = COVARIANCES.get(model.covariance_type)
        if (cov is None or m.ndim != 2 or tuple(w.shape) != (m.shape[0],) or tuple(pc.shape) != cov.shape(*m.shape)
                or c.shape != pc.shape):
            raise corrupt("its arrays do not have the shapes of one mixture")
        _check_contents(model, fitted, dict(zip(("weights", "means", "covariances", "precisions_cholesky"), (w, m, c, pc))),
                        corrupt)
        kind = array_kind or fitted.pop("array_kind", "numpy")
        fitted.pop("array_kind", None)
        for name in _ARRAYS:
            t = tensors[name.rstrip("_")]
            setattr(model, name, t.numpy() if kind == "numpy" else t.to(device or "cpu"))
        prec = COVARIANCES[model.covariance_type].precisions(torch.as_tensor(model.precisions_cholesky_))
        model.precisions_ = prec.numpy() if kind == "numpy" else prec
        for name, value in fitted.items():
            if name in ("lower_bound_",):
                value = float(value)
            elif name == "lower_bounds_":
                value = [float(v) for v in value]
            elif name == "feature_names_in_":  # as scikit-learn keeps them: an object array of str
                value = np.asarray([str(v) for v in value], dtype=object)
            setattr(model, name, value)
        return model

    def to_distribution(self) -> torch.distributions.MixtureSameFamily:
        """The fitted mixture as ``torch.distributions.MixtureSameFamily`` (log_prob, sample)."""
        from torch.distributions import (
            Categorical,
            Independent,
            MixtureSameFamily,
            MultivariateNormal,
            Normal,
        )

        from gmmgan.mixture._covariance import COVARIANCES

        self._check_is_fitted()
        weights = torch.as_tensor(self.weights_)
        means = torch.as_tensor(self.means_)
        covs = torch.as_tensor(self.covariances_)
        k, d = means.shape
        mix = Categorical(probs=weights)
        if self.covariance_type in ("full", "tied"):
            chol = torch.linalg.cholesky(COVARIANCES[self.covariance_type].full_covariances(covs, k, d))
            comp = MultivariateNormal(loc=means, scale_tril=chol)
        else:
            std = covs.sqrt() if self.covariance_type == "diag" else covs.sqrt().unsqueeze(1).expand(k, d)
            comp = Independent(Normal(means, std), 1)
        return MixtureSameFamily(mix, comp)

    @classmethod
    def from_sklearn(cls, model, **params):
        """A gmmgan GaussianMixture holding the parameters of a fitted scikit-learn one.

        Extra keyword arguments (e.g. ``device``, ``dtype``) are passed to the constructor.
        """
        if not hasattr(model, "means_"):
            raise ValueError("from_sklearn needs a fitted sklearn.mixture.GaussianMixture (call fit first).")
        names = ("n_components", "covariance_type", "tol", "reg_covar", "max_iter", "n_init", "init_params", "warm_start")
        kwargs = {name: getattr(model, name) for name in names}
        rs = model.random_state
        kwargs["random_state"] = rs if isinstance(rs, int) else None
        kwargs.update(params)
        out = cls(**kwargs)
        for name in _ARRAYS + ("precisions_",):
            setattr(out, name, np.array(getattr(model, name), copy=True))
        out.converged_ = bool(model.converged_)
        out.n_iter_ = int(model.n_iter_)
        out.lower_bound_ = float(model.lower_bound_)
        out.lower_bounds_ = [float(v) for v in getattr(model, "lower_bounds_", [])]
        out.n_features_in_ = int(model.means_.shape[1])
        if hasattr(model, "feature_names_in_"):  # fitted on a dataframe: the same names are checked
            out.feature_names_in_ = np.array(model.feature_names_in_, dtype=object, copy=True)
        return out

    def to_sklearn(self):
        """A fitted ``sklearn.mixture.GaussianMixture`` with this model's parameters (needs scikit-learn)."""
        try:
            from sklearn.mixture import GaussianMixture as SkGaussianMixture
        except ImportError:  # pragma: no cover
            raise ImportError("to_sklearn needs scikit-learn: pip install scikit-learn") from None
        self._check_is_fitted()
        rs = self.random_state if isinstance(self.random_state, int) else None
        sk = SkGaussianMixture(
            n_components=self.n_components, covariance_type=self.covariance_type, tol=self.tol,
            reg_covar=self.reg_covar, max_iter=self.max_iter, n_init=self.n_init, init_params=self.init_params,
            random_state=rs, warm_start=self.warm_start,
        )
        for name in _ARRAYS + ("precisions_",):
            setattr(sk, name, torch.as_tensor(getattr(self, name)).detach().cpu().numpy().copy())
        sk.converged_ = bool(self.converged_)
        sk.n_iter_ = int(self.n_iter_)
        sk.lower_bound_ = float(self.lower_bound_)
        sk.lower_bounds_ = list(getattr(self, "lower_bounds_", []))
        sk.n_features_in_ = int(self.n_features_in_)
        if hasattr(self, "feature_names_in_"):
            sk.feature_names_in_ = np.array(self.feature_names_in_, dtype=object, copy=True)
        return sk

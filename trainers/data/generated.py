"""Generated tasks, deterministic by seed, and scikit-learn's 8x8 digits.

- ``gaussian_mixture``: Gaussian clusters, several per class, with ``label_noise`` (a
  fraction of labels replaced at random) so that overfitting is visible.
- ``spirals``: two interleaved spirals in 2-D (``noise`` sets the jitter).
- ``rings``: Gaussian inputs labelled by the parity of the radial band that ``||x||^2``
  falls in (bands at quantiles, so classes balance). A composition: squares of every
  coordinate, their sum, then an oscillating function of it; in the spirit of Eldan &
  Shamir's depth separation (2016), a deep net computes it layer by layer while a
  one-hidden-layer net needs far more units. Depth genuinely helps at an equal parameter
  count (8 dims, 4 bands, ~600 parameters, 40 epochs of Adam: about 0.62 validation accuracy
  at depth 1 against 0.83 at depth 4; `tests/trainers/test_lessons.py` checks it).
"""

from __future__ import annotations

import numpy as np

from trainers.data.dataset import DataError


def gaussian_mixture(
    n_samples: int = 2000,
    n_features: int = 20,
    n_classes: int = 4,
    clusters_per_class: int = 2,
    separation: float = 2.0,
    label_noise: float = 0.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Clusters with unit covariance around random centres; `label_noise` of the labels are
    replaced by a uniformly random class."""
    if not 0 <= label_noise <= 1:
        raise DataError(f"gaussian_mixture: label_noise must be in [0, 1], got {label_noise!r}")
    rng = np.random.default_rng(seed)
    k = n_classes * clusters_per_class
    centres = rng.normal(0, separation, (k, n_features))
    cluster = rng.integers(0, k, n_samples)
    X = centres[cluster] + rng.normal(0, 1, (n_samples, n_features))
    y = cluster % n_classes
    flip = rng.random(n_samples) < label_noise
    y[flip] = rng.integers(0, n_classes, int(flip.sum()))
    return X, y


def spirals(n_samples: int = 1000, noise: float = 0.2, turns: float = 1.75, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spirals, half the samples each."""
    rng = np.random.default_rng(seed)
    n = n_samples // 2
    t = np.sqrt(rng.random(n)) * turns * 2 * np.pi
    arm = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / (turns * 2 * np.pi)
    X = np.concatenate([arm, -arm]) * 3 + rng.normal(0, noise, (2 * n, 2))
    y = np.concatenate([np.zeros(n, np.int64), np.ones(n, np.int64)])
    return X, y


def rings(n_samples: int = 8000, n_features: int = 8, bands: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Label = parity of the index of the radial band containing ``||x||^2``, with band
    edges at the quantiles of ``||x||^2`` so that the classes balance."""
    if bands < 2 or n_features < 1:
        raise DataError(f"rings: bands must be >= 2 and n_features >= 1, got bands={bands!r}, n_features={n_features!r}")
    rng = np.random.default_rng(seed)
    X = rng.normal(0, 1, (n_samples, n_features))
    r2 = np.square(X).sum(axis=1)
    edges = np.quantile(r2, np.linspace(0, 1, bands + 1)[1:-1])
    return X, np.searchsorted(edges, r2) % 2


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 handwritten digits (1797 x 64, 10 classes), shipped with it."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data, d.target

"""A cheap surrogate: Bayesian linear regression with a Gaussian prior per group of features.

Ten lookups cannot train anything large, so the model is linear in hand-made features (for a
table: how often each operation appears, which operation sits at each position, the total
capacity) with a prior that shrinks each weight towards zero. A feature never seen varied keeps
its prior uncertainty, which is what the search's optimism spends. Fitting is a small dense solve,
well under a millisecond at these sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["LinearPosterior", "fit_linear"]

Matrix = NDArray[np.float64]


@dataclass(frozen=True)
class LinearPosterior:
    """The posterior over the weights, and how to map a prediction back to the target's units."""

    offset: float  # the mean of the targets the model was fitted on
    center: Matrix  # the mean feature row of the observations
    scale: float  # the targets' unit: weights are in multiples of it
    mean: Matrix  # posterior mean of the weights, shape (features,)
    cov: Matrix  # posterior covariance, shape (features, features)

    def predict(self, x: Matrix) -> tuple[Matrix, Matrix]:
        """Posterior mean and standard deviation of the target for each row of ``x``."""
        d = x - self.center
        mu = self.offset + self.scale * (d @ self.mean)
        var = np.einsum("ij,jk,ik->i", d, self.cov, d)
        return mu, self.scale * np.sqrt(np.maximum(var, 0.0))


def fit_linear(
    x: Matrix, y: Matrix, prior_sd: Matrix, *, noise_sd: float, scale: float
) -> LinearPosterior:
    """Fit ``y ~ mean(y) + scale * (x - mean(x)) @ w`` with ``w ~ N(0, diag(prior_sd**2))``.

    ``noise_sd`` and ``prior_sd`` are in units of ``scale``. Centring both sides is an intercept
    with a flat prior: with one observation every prediction is that observation, and the
    uncertainty grows with the distance from what was observed, not with the features' size.
    """
    if x.ndim != 2 or y.shape != (x.shape[0],) or prior_sd.shape != (x.shape[1],):
        raise ValueError(f"shapes do not match: x {x.shape}, y {y.shape}, prior {prior_sd.shape}")
    if not (scale > 0.0 and noise_sd > 0.0 and bool(np.all(prior_sd > 0.0))):
        raise ValueError("scale, noise_sd and every prior_sd must be > 0")
    offset = float(np.mean(y))
    center = x.mean(axis=0)
    d = x - center
    target = (y - offset) / scale
    precision = d.T @ d / noise_sd**2 + np.diag(1.0 / prior_sd**2)
    cov = np.linalg.inv(precision)
    cov = (cov + cov.T) / 2.0
    mean = cov @ (d.T @ target) / noise_sd**2
    return LinearPosterior(offset=offset, center=center, scale=float(scale), mean=mean, cov=cov)

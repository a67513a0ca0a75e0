"""Probabilities one can trust: temperature scaling (Guo et al., 2017) fitted on held-out photos, and the expected
calibration error that says how far a model's confidence is from its accuracy.

A softmax trained with cross-entropy on few epochs is typically over- or under-confident; one temperature per model and
head, fitted on photos it did not train on, fixes most of that without changing any answer (dividing the logits by a
positive number keeps their order).  It works on probabilities as the package's predictors return them:
`softmax(log p / T)` equals `softmax(z / T)` for the logits `z` that gave `p`.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

BINS = 15  # equal-width confidence bins of the ECE, as in Guo et al.


def _log(probs) -> torch.Tensor:
    return torch.as_tensor(np.asarray(probs), dtype=torch.float64).clamp_min(1e-300).log()


def temper(probs, temperature: float) -> np.ndarray:
    "The probabilities the same logits give at `temperature` (1: unchanged)."
    return torch.softmax(_log(probs) / temperature, 1).numpy()


def fit_temperature(probs, targets) -> float:
    """The temperature that minimises the negative log-likelihood of `targets` (class indices) under `probs` tempered:
    a convex problem in 1/T, solved by L-BFGS on log T."""
    logp, y = _log(probs), torch.as_tensor(np.asarray(targets), dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn='strong_wolfe')

    def nll():
        opt.zero_grad()
        loss = F.cross_entropy(logp / log_t.exp(), y)
        loss.backward()
        return loss
    opt.step(nll)
    return float(log_t.detach().exp())


def reliability(probs, targets, bins: int = BINS) -> list:
    "Per confidence bin with photos: (mean confidence, accuracy, photos), the points of a reliability diagram."
    p = np.asarray(probs)
    conf, hit = p.max(1), p.argmax(1) == np.asarray(targets)
    which = np.minimum((conf * bins).astype(int), bins - 1)
    return [(float(conf[which == b].mean()), float(hit[which == b].mean()), int((which == b).sum()))
            for b in range(bins) if (which == b).any()]


def ece(probs, targets, bins: int = BINS) -> float:
    "Expected calibration error: the photo-weighted mean gap between confidence and accuracy over the bins."
    points = reliability(probs, targets, bins)
    n = sum(c for _, _, c in points)
    return sum(c * abs(conf - acc) for conf, acc, c in points) / n if n else 0.

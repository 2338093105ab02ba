"""Attack objectives on logits, all per image and all to be *maximised* by the attacker.

- cross-entropy: untargeted ``CE(z, y)``; targeted ``−CE(z, t)``.
- CW margin (Carlini–Wagner, Zhang et al. 2020 eq. 4 / Pochimireddy et al. 2021 supplementary): untargeted
  ``min(max_{i≠y} z_i − z_y, κ)``; targeted ``min(z_t − max_{i≠t} z_i, κ)``.
- Balda et al. 2019 loss ``L = f_k − max_{l≠k} f_l`` (to be driven below 0) is ``−margin`` with κ = ∞.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def best_other(logits: torch.Tensor, exclude: torch.Tensor) -> torch.Tensor:
    """``max_{i ≠ exclude} z_i`` per row; ``exclude`` is ``(N,)`` class indices."""
    masked = logits.masked_fill(F.one_hot(exclude, logits.shape[1]).bool(), float("-inf"))
    return masked.amax(dim=1)


def margin(
    logits: torch.Tensor, labels: torch.Tensor, target: int | None = None, kappa: float = float("inf")
) -> torch.Tensor:
    """CW margin to maximise, clipped at ``kappa`` (``(N,)``); positive means the attack succeeded."""
    if target is None:
        value = best_other(logits, labels) - logits.gather(1, labels[:, None])[:, 0]
    else:
        t = torch.full_like(labels, target)
        value = logits.gather(1, t[:, None])[:, 0] - best_other(logits, t)
    return value.clamp(max=kappa) if kappa != float("inf") else value


def pair_margin(
    logits: torch.Tensor, labels: torch.Tensor, target: int, kappa: float = float("inf")
) -> torch.Tensor:
    """Balda et al.'s targeted loss (their eq. 23) to maximise: ``z_t − z_k`` (k = ``labels``),
    clipped at ``kappa``; ``(N,)``. Positive once the target beats the label (not necessarily
    every other class)."""
    t = torch.full_like(labels, target)
    value = logits.gather(1, t[:, None])[:, 0] - logits.gather(1, labels[:, None])[:, 0]
    return value.clamp(max=kappa) if kappa != float("inf") else value


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, target: int | None = None) -> torch.Tensor:
    """Cross-entropy objective to maximise (``(N,)``)."""
    if target is None:
        return F.cross_entropy(logits, labels, reduction="none")
    return -F.cross_entropy(logits, torch.full_like(labels, target), reduction="none")


def objective(loss: str, labels: torch.Tensor, target: int | None, kappa: float = float("inf")):
    """A ``(logits, x) -> (N,)`` objective for :meth:`AttackContext.gradient`."""
    if loss == "ce":
        return lambda z, _x: cross_entropy(z, labels, target)
    if loss == "cw":
        return lambda z, _x: margin(z, labels, target, kappa)
    raise ValueError(f"loss must be 'ce' or 'cw'; got {loss!r}.")


def is_adversarial(logits: torch.Tensor, labels: torch.Tensor, target: int | None) -> torch.Tensor:
    """``(N,)`` bool: the prediction left ``labels`` (or reached ``target``)."""
    pred = logits.argmax(1)
    return pred == target if target is not None else pred != labels

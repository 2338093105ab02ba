"""Exact forward/backward pass counts of the perceptual attacks (Laidlaw, Singla and Feizi 2021,
"Perceptual Adversarial Robustness", App. A.1–A.3): the counts of :mod:`percviz.attacks.perceptual`
as implemented (``external`` = bounded by a second network φ), and the counts as the paper prints
them, with each difference explained. The tests compare every run's counted passes with these.
"""

from __future__ import annotations


def ppgd_passes(steps: int, cg_iters: int, bisect_iters: int, external: bool = False) -> tuple[int, int]:
    """Exact (forward, backward) passes of :func:`~percviz.attacks.perceptual.ppgd` with bisection projection.

    Per step: one forward+backward for ∇f̂ and φ(x̃) (self; external: +1 forward for φ), ``K``
    products ``JᵀJp`` of one forward and one backward each, one forward for ``m``, and the
    projection's ``n + 1`` forwards; plus φ(x) once. App. A.1 prints ``T(K+n+4)`` forwards
    (``T(K+n+5)`` external) and ``T(K+n+3)`` backwards: it also counts the product ``JᵀJ·δ₀`` with
    ``δ₀ = 0`` (identically zero; skipped here) and a backward per projection forward (bisection
    needs none); its ``n + 1`` projection forwards include φ(x), here computed once for the whole
    attack (the ``+ 1``) while the projection's extra forward measures ``d(x̃, x)``. A step whose
    iterate lies inside the ball for every image skips the ``n`` bisection forwards (reported as
    ``info['projections_skipped']``): the run's count is this minus ``n ×`` that.
    """
    fwd = 1 + steps * (cg_iters + bisect_iters + 3 + int(external))
    return fwd, steps * (cg_iters + 1)


def lpa_passes(steps: int, search_steps: int, bisect_iters: int, external: bool = False) -> tuple[int, int]:
    """Exact (forward, backward) passes of :func:`~percviz.attacks.perceptual.lpa` with bisection projection.

    Forwards equal App. A.2's ``2ST + n + 2`` (``3ST + n + 2`` external): φ(x) once, per step one
    forward of f and φ together (external: two) plus one for ``m``, then the ``n + 1`` of the
    projection. The end-of-round test ``d(x̃, x) > ε`` reuses the next round's forward, which is at
    the same point. Backwards: ``ST`` (``2ST`` external); App. A.2 adds ``n + 2`` that bisection
    does not need. When the last iterate lies inside the ball for every image the final bisection
    is skipped (``info['projections_skipped']`` = 1): ``n`` forwards fewer.
    """
    k = 3 if external else 2
    return k * search_steps * steps + bisect_iters + 2, (k - 1) * search_steps * steps


def fast_lpa_passes(steps: int, external: bool = False) -> tuple[int, int]:
    """Exact (forward, backward) passes of :func:`~percviz.attacks.perceptual.fast_lpa`.

    App. A.3 prints ``2T + 1`` forwards and ``T + 1`` backwards (``3T + 1`` / ``2T + 1`` external).
    Here: the same forwards plus one to measure the final distance honestly (no projection
    measures it), and ``T`` backwards (``2T`` external) — nothing needs the extra backward.
    """
    k = 3 if external else 2
    return k * steps + 2, (k - 1) * steps


def paper_passes(
    attack: str, steps: int, *, cg_iters: int = 5, search_steps: int = 5, bisect_iters: int = 10
) -> tuple[int, int]:
    """The self-bounded (forward, backward) counts exactly as printed in Laidlaw et al. 2021 App. A.1–A.3."""
    t, k, n, s = steps, cg_iters, bisect_iters, search_steps
    if attack == "ppgd":
        return t * (k + n + 4), t * (k + n + 3)
    if attack == "lpa":
        return 2 * s * t + n + 2, s * t + n + 2
    if attack == "fast_lpa":
        return 2 * t + 1, t + 1
    raise ValueError(f"No App. A formula for {attack!r}.")

"""Attack replay: what the model said at each recorded iterate of one run (image 0).

:func:`build_replay` takes the frames :func:`~percviz.attacks.base.run_attack` kept
(``frames=…``, :mod:`percviz.attacks.frames`), classifies them in one batched pass (chunks of
:data:`CHUNK`), and pairs each with the run's own loss at that iteration and its distance from the
clean image — everything the Explore page's step slider and ``percviz attack --frames`` show,
computed once, so scrubbing reruns nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from percviz.analysis.views import nice_gain

if TYPE_CHECKING:
    from percviz.attacks.base import AttackResult

CHUNK = 16  # frames per forward pass


@dataclass(frozen=True)
class Replay:
    """One run's recorded iterates of image 0 and what each one is.

    ``frames``: ``K×H×W×3`` float32 in [0, 1] (frame 0 is the clean image, the last the returned
    one); ``perturbations``: ``0.5 + gain·(frame − clean)`` with one gain for all frames (the
    largest 1-2-5 value that clips none), so every step is drawn on one scale; per frame the iteration, the top-1 class and probability, the
    attack's objective at that iteration (None where it reports none) and the L∞ (/255) and L2
    distances from the clean image.
    """

    frames: np.ndarray
    perturbations: np.ndarray
    gain: float
    iterations: tuple[int, ...]
    total: int
    classes: tuple[str, ...]
    probabilities: tuple[float, ...]
    loss: tuple[float | None, ...]
    linf_255: tuple[float, ...]
    l2: tuple[float, ...]

    def caption(self, k: int) -> str:
        """One line about frame ``k``: step, top-1 with its probability, loss and distances."""
        loss = "" if self.loss[k] is None else f" · loss {self.loss[k]:.3g}"
        return (
            f"step {self.iterations[k]} of {self.total} · {self.classes[k]} "
            f"({self.probabilities[k]:.0%}){loss} · L∞ {self.linf_255[k]:.2f}/255 · L2 {self.l2[k]:.3f}"
        )

    @property
    def nbytes(self) -> int:
        return int(self.frames.nbytes + self.perturbations.nbytes)


def _loss_at(history: list[dict[str, Any]]) -> dict[int, float]:
    """The reported objective (``loss``) per iteration, where the attack reports one."""
    out: dict[int, float] = {}
    for record in history:
        value = record.get("loss")
        if isinstance(value, int | float) and math.isfinite(value):
            out[int(record["iteration"])] = float(value)
    return out


@torch.no_grad()
def build_replay(
    model: torch.nn.Module, result: AttackResult, class_names: list[str] | None = None
) -> Replay | None:
    """The replay of ``result`` (None when it recorded no frames)."""
    if result.frames is None or len(result.frame_iterations) == 0:
        return None
    frames = result.frames.float().clamp(0.0, 1.0)
    device = next(iter(model.buffers())).device
    probs = torch.cat(
        [torch.softmax(model(chunk.to(device)).float(), 1).cpu() for chunk in frames.split(CHUNK)]
    )
    best = probs.max(dim=1)
    names = class_names or []
    gain = nice_gain(max(linf for linf, _ in result.frame_distances))
    loss = _loss_at(result.history)
    totals = [int(r["total"]) for r in result.history if "total" in r]
    hwc = frames.permute(0, 2, 3, 1).numpy().astype(np.float32)
    return Replay(
        frames=hwc,
        perturbations=np.clip(0.5 + gain * (hwc - hwc[:1]), 0.0, 1.0).astype(np.float32),
        gain=float(gain),
        iterations=tuple(result.frame_iterations),
        total=max([*totals, result.frame_iterations[-1]]),
        classes=tuple(names[i] if 0 <= i < len(names) else f"class {i}" for i in best.indices.tolist()),
        probabilities=tuple(float(p) for p in best.values),
        loss=tuple(loss.get(it + 1) for it in result.frame_iterations),
        linf_255=tuple(linf * 255.0 for linf, _ in result.frame_distances),
        l2=tuple(l2 for _, l2 in result.frame_distances),
    )


def save_replay(replay: Replay, out: Path, frame_ms: int = 250) -> list[str]:
    """``frames.npz`` (the iterates ``K×H×W×3`` float16, and per frame the iteration, top-1 class
    and probability, loss — NaN where none — and L∞ /255 and L2) and ``replay.gif`` (iterate |
    perturbation, one frame per recorded step, ``frame_ms`` each) in ``out``; returns the names."""
    from PIL import Image

    np.savez_compressed(
        out / "frames.npz",
        frames=replay.frames.astype(np.float16),
        iterations=np.array(replay.iterations),
        total=np.array(replay.total),
        classes=np.array(replay.classes),
        probabilities=np.array(replay.probabilities),
        loss=np.array([math.nan if v is None else v for v in replay.loss]),
        linf_255=np.array(replay.linf_255),
        l2=np.array(replay.l2),
        gain=np.array(replay.gain),
    )
    pictures = [
        Image.fromarray(np.rint(np.concatenate([f, p], axis=1) * 255).astype(np.uint8), mode="RGB")
        for f, p in zip(replay.frames, replay.perturbations, strict=True)
    ]
    pictures[0].save(out / "replay.gif", save_all=True, append_images=pictures[1:], duration=frame_ms, loop=0)
    return ["frames.npz", "replay.gif"]

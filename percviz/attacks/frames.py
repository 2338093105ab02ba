"""A bounded record of an iterative attack's iterates, for replay: image 0 of the batch at evenly
spaced iterations, at most ``limit`` frames (the start and the returned image included), kept on
the CPU in float16 — ``limit × 3 × H × W × 2`` bytes (40 frames of 224×224: 12 MB).

:class:`~percviz.attacks.base.AttackContext` offers each iterate to its recorder at every
``ctx.step(..., iterate=x)``; the template adds the clean image as iteration 0 and the returned
image as the last frame.
"""

from __future__ import annotations

import math

import torch

#: Frames kept of one run (start and end included).
MAX_FRAMES = 40


class FrameRecorder:
    """Keeps image 0 of every ``stride``-th iterate, ``stride = ⌈total / (limit − 2)⌉``."""

    def __init__(self, limit: int = MAX_FRAMES) -> None:
        if limit < 3:
            raise ValueError(f"A replay needs at least 3 frames (start, a step, end); got {limit}.")
        self.limit = limit
        self.frames: list[torch.Tensor] = []
        self.iterations: list[int] = []
        self.distances: list[tuple[float, float]] = []
        """``(L∞, L2)`` of each frame from the first, measured in float64 before the float16 copy
        (float16 alone would misstate a 4/255 bound by up to 0.12/255)."""
        self._origin: torch.Tensor | None = None

    def keep(self, iteration: int, image: torch.Tensor) -> None:
        """Record ``image`` (``N×3×H×W``; image 0 is kept) as the iterate after ``iteration`` steps."""
        exact = image[0].detach().double()
        if self._origin is None:
            self._origin = exact.clone()
        delta = (exact - self._origin).flatten()
        distance = (float(delta.abs().max()), float(delta.norm()))
        frame = exact.to("cpu", torch.float16)
        if self.iterations and self.iterations[-1] == iteration:
            self.frames[-1], self.distances[-1] = frame, distance
            return
        self.frames.append(frame)
        self.iterations.append(iteration)
        self.distances.append(distance)

    def offer(self, iteration: int, total: int, image: torch.Tensor) -> None:
        """Keep the iterate if ``iteration`` falls on the stride (the end one is kept by the template)."""
        stride = max(1, math.ceil(total / (self.limit - 2)))
        if iteration % stride == 0 and len(self.frames) < self.limit - 1:
            self.keep(iteration, image)

    def stacked(self) -> torch.Tensor:
        """``K×3×H×W`` float16."""
        return torch.stack(self.frames)

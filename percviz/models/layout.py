"""Channels-last inputs for the attack loops.

oneDNN (CPU) and cuDNN run convolutions faster on NHWC tensors. Feeding the model a
channels-last *input* is enough (the weights stay as loaded, so the model is unchanged for anyone
else who calls it). Measured with EfficientNet-Lite0 at 224×224 on 2 CPU cores, one forward and
backward to the input: 39.6 → 35.4 ms at batch 1, 269 → 209 ms at batch 8; gradients agree to
2e-7 (``benchmarks/peers.py`` reports the effect on whole attacks).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

T = TypeVar("T")

_REFUSES: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def call_channels_last(module: nn.Module, fn: Callable[[torch.Tensor], T], x: torch.Tensor) -> T:
    """``fn(x)`` with ``x`` (``N×C×H×W``) in channels-last memory format, the same values.

    A model whose forward fails on a channels-last input (e.g. an own model calling ``.view`` on
    a convolution's output) is remembered and called with ``x`` as given from then on. Running out
    of memory is not such a failure: it propagates (the batch splitter handles it).
    """
    if x.ndim != 4 or module in _REFUSES:
        return fn(x)
    try:
        return fn(x.contiguous(memory_format=torch.channels_last))
    except torch.OutOfMemoryError:
        raise
    except RuntimeError:
        _REFUSES.add(module)
        return fn(x)

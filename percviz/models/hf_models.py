"""Hugging Face image classifiers from the local hub cache (``hf:REPO_ID``; nothing is downloaded):
config, labels and preprocessing read with capped reads, the network loaded by transformers and
wrapped to return its logits tensor. Used by :mod:`percviz.models.custom`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from percviz.errors import ModelFileError, one_line
from percviz.textio import read_capped_text

Triple = tuple[float, float, float]


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache folder (``HF_HUB_CACHE``, else ``HF_HOME/hub``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    return Path(home) / "hub"


class _LogitsOnly(nn.Module):
    """A Hugging Face classifier returning the ``logits`` tensor of its output object."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values=x).logits


def read_hf(
    repo: str,
) -> tuple[nn.Module, int | None, Triple | None, Triple | None, tuple[str, ...]]:
    """``(net, input size, mean, std, labels)`` of a Hugging Face image classifier in the local
    cache (nothing is downloaded); the net returns the logits tensor. Raises :class:`ModelFileError`."""
    from huggingface_hub import try_to_load_from_cache

    cache = hf_cache_dir()
    try:
        config_path = try_to_load_from_cache(repo, "config.json", cache_dir=cache)
    except Exception as exc:  # huggingface_hub's HFValidationError for ids such as '../../etc'
        raise ModelFileError(f"'{repo}' is not a Hugging Face repository id ({one_line(exc)}).") from None
    if not isinstance(config_path, str):
        raise ModelFileError(
            f"Hugging Face model '{repo}' is not in the local cache '{cache}'; download it on a "
            f"networked machine (hf download {repo}) and copy the cache folder here."
        )
    try:
        from transformers import AutoModelForImageClassification
    except ImportError:
        raise ModelFileError(
            "Hugging Face models need the transformers package (pip install transformers)."
        ) from None
    config = json.loads(read_capped_text(config_path, "model config", error=ModelFileError))
    id2label = config.get("id2label") or {}
    labels = tuple(str(id2label[k]) for k in sorted(id2label, key=int)) if id2label else ()
    size, mean, std = None, None, None
    pre = try_to_load_from_cache(repo, "preprocessor_config.json", cache_dir=cache)
    if isinstance(pre, str):
        prep = json.loads(read_capped_text(pre, "preprocessor config", error=ModelFileError))
        raw = prep.get("crop_size") or prep.get("size")
        side = raw.get("height") or raw.get("shortest_edge") if isinstance(raw, dict) else raw
        size = int(side) if side else None
        mean = _triple(prep.get("image_mean"))
        std = _triple(prep.get("image_std"))
    try:
        net = AutoModelForImageClassification.from_pretrained(repo, cache_dir=cache, local_files_only=True)
    except Exception as exc:
        raise ModelFileError(f"Hugging Face model '{repo}' cannot be loaded ({one_line(exc)}).") from None
    return _LogitsOnly(net), size, mean, std, labels


def _triple(values: object) -> Triple | None:
    """Three per-channel numbers from a preprocessor config, else None (the ImageNet default)."""
    if isinstance(values, list) and len(values) == 3:
        return (float(values[0]), float(values[1]), float(values[2]))
    return None

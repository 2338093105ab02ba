"""Exception types: every user-facing failure is one of these, with one clear sentence."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class PercvizError(Exception):
    """Base class for errors whose message is meant to be shown to a user as is."""


class ImageError(PercvizError, ValueError):
    """An image could not be read, or was refused (corrupt, truncated, bomb, not an image)."""


class ModelUnavailableError(PercvizError):
    """A model's weights are not on this machine; the message names the file and folder."""


class UnknownIdError(PercvizError, KeyError):
    """An attack, model or parameter id that does not exist; the message lists valid ids."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ParameterError(PercvizError, ValueError):
    """A parameter value outside its schema (type, range, NaN/inf, unknown name)."""


class RecipeError(PercvizError, ValueError):
    """A recipe file that cannot be parsed or replayed."""


class ModelFileError(PercvizError, ValueError):
    """A user's model that cannot be used as is; the message says why and what to do."""


#: How a TorchScript interpreter failure starts; its last line holds the real error.
TORCHSCRIPT_FAILURE = "The following operation failed in the TorchScript interpreter"
#: How an allocator says it ran out (CPU ``DefaultCPUAllocator``, CUDA, MPS, Python).
MEMORY_WORDS = ("can't allocate memory", "not enough memory", "out of memory", "tried to allocate")


def one_line(exc: BaseException, limit: int = 200) -> str:
    """``exc``'s message on one line without a closing full stop, cut to ``limit`` characters (for
    embedding in one-sentence errors); a
    TorchScript interpreter failure gives only its last line (the error), not the code traceback."""
    text = str(exc)
    if text.startswith(TORCHSCRIPT_FAILURE):
        lines = [line for line in text.splitlines() if line.strip()]
        text = lines[-1].strip() if lines else text
    text = " ".join(text.split()).rstrip(".")
    return text[:limit] + ("…" if len(text) > limit else "")


def out_of_memory_text(exc: BaseException) -> bool:
    """Whether ``exc`` says an allocation failed (any device), from its type or message."""
    return isinstance(exc, MemoryError) or any(word in str(exc).lower() for word in MEMORY_WORDS)


class ModelOutputError(PercvizError, ValueError):
    """A model whose output on the given input is not finite (NaN or ±inf): nothing can be measured."""


def check_finite_output(output: torch.Tensor, title: str) -> None:
    """Raise :class:`ModelOutputError` (one sentence) when ``output`` holds NaN or ±inf."""
    import torch

    if not bool(torch.isfinite(output).all()):
        raise ModelOutputError(
            f"Model '{title}' gives non-finite outputs (NaN or ±inf) on this image, so no attack "
            "or prediction on it means anything; check the model (its normalisation, its last layer)."
        )

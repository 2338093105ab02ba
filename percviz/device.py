"""Device selection: CUDA when present, else Apple MPS, else CPU; overridable."""

import torch


def best_device(preferred: str | None = None) -> torch.device:
    """Return ``preferred`` if given (e.g. ``"cpu"``, ``"cuda:1"``), else the fastest device here."""
    if preferred:
        return torch.device(preferred)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def out_of_memory(exc: BaseException) -> bool:
    """True for a device out-of-memory error (CUDA's ``OutOfMemoryError``, MPS's ``RuntimeError``);
    the accelerator's cached blocks are released so a smaller retry can fit."""
    if not (isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()):
        return False
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return True

"""Device selection: CUDA when present, else Apple MPS, else CPU; overridable."""

import torch


def check_device(text: str, name: str = "Device") -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``mps``, present on this machine; else ParameterError (one
    sentence naming it ``name``), whether it came from ``--device`` or a recipe's ``"device"``."""
    from percviz.errors import ParameterError

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ParameterError(f"{name} must be cpu, cuda, cuda:N or mps; got '{text}'.")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ParameterError(f"{name} {text}: no CUDA device is available on this machine.")
        if device.index is not None and device.index >= count:
            raise ParameterError(f"{name} {text}: this machine has {count} CUDA device(s), 0–{count - 1}.")
    mps = getattr(torch.backends, "mps", None)
    if device.type == "mps" and not (mps is not None and mps.is_available()):
        raise ParameterError(f"{name} {text}: Apple MPS is not available on this machine.")
    return device


def best_device(preferred: str | None = None) -> torch.device:
    """Return ``preferred`` if given (e.g. ``"cpu"``, ``"cuda:1"``; checked by :func:`check_device`),
    else the fastest device here."""
    if preferred:
        return check_device(preferred)
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

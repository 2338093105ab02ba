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

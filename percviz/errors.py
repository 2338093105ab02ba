"""Exception types: every user-facing failure is one of these, with one clear sentence."""


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


def one_line(exc: BaseException, limit: int = 200) -> str:
    """``exc``'s message on one line, cut to ``limit`` characters (for one-sentence errors)."""
    text = " ".join(str(exc).split())
    return text[:limit] + ("…" if len(text) > limit else "")

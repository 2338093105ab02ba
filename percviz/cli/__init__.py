"""The ``percviz`` command line (:func:`main`); one module per command, shared arguments in
:mod:`percviz.cli.args`."""

from percviz.cli.main import main

__all__ = ["main"]

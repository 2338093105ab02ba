"""percviz: perceptually guided adversarial examples — attacks, metrics, maps and figures.

The core package knows nothing of Streamlit; the app in ``app.py``/``pages/`` and the command line
in :mod:`percviz.cli` are thin layers over it.
"""

__version__ = "0.1.0"

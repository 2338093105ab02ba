"""``python -m percviz`` runs the command line."""

from percviz.cli import main

raise SystemExit(main())

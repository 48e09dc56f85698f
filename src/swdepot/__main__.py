"""``python -m swdepot`` runs the command line."""

from swdepot.cli import main

raise SystemExit(main())

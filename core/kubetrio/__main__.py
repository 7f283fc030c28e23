"""``python -m kubetrio`` runs the CLI."""

from kubetrio.cli import main

main()

"""The ``kubetrio`` command line (Typer + Rich)."""

from ._app import build_app as build_app
from ._app import main as main

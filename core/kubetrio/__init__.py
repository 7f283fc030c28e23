"""kubetrio: a small, hackable, Kubernetes-compatible container orchestrator on trio."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kubetrio")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

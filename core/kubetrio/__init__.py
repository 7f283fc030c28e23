"""kubetrio: a small, hackable, Kubernetes-compatible container orchestrator on trio."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kubetrio")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

KUBERNETES_VERSION = (1, 33, 0)
"""The one Kubernetes release kubetrio speaks and reports everywhere: the API server's
``/version`` and OpenAPI ``info.version``, nodes' ``kubeletVersion``/``kubeProxyVersion``,
probe and client user agents. 1.33 is the newest kubectl tested; kr8s accepts 1.29 to 1.35."""

KUBERNETES_GIT_VERSION = "v{}.{}.{}+kubetrio".format(*KUBERNETES_VERSION)
"""``KUBERNETES_VERSION`` as a ``gitVersion`` (semver with build metadata, as ``+k3s1``)."""

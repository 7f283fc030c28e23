"""The control plane's loop periods that upstream exposes as flags, on ``server`` and ``up``.

``--metric-resolution`` is metrics-server's (how often the node agents' resource metrics
are scraped for ``metrics.k8s.io``), ``--horizontal-pod-autoscaler-sync-period``
kube-controller-manager's (how often each HorizontalPodAutoscaler is reconciled). Both
default to upstream's 15 s; tests and demos shorten them, as upstream's e2e clusters do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from kubetrio.apiserver._resourcemetrics import RESOLUTION
from kubetrio.controllers import HorizontalController
from kubetrio.controllers._hpa import SYNC_PERIOD

if TYPE_CHECKING:
    from kubetrio.cluster import Cluster

DEFAULT_PERIODS = (RESOLUTION, SYNC_PERIOD)
"""Upstream's metric resolution and HPA sync period, in seconds."""

METRIC_RESOLUTION_OPTION = typer.Option(
    RESOLUTION,
    "--metric-resolution",
    min=1.0,
    help="Seconds between scrapes of the nodes' resource metrics (metrics.k8s.io, kubectl top).",
)
HPA_SYNC_PERIOD_OPTION = typer.Option(
    SYNC_PERIOD,
    "--horizontal-pod-autoscaler-sync-period",
    min=1.0,
    help="Seconds between two reconciles of each HorizontalPodAutoscaler.",
)


def period_args(metric_resolution: float, hpa_sync_period: float) -> list[str]:
    """The periods as arguments of ``kubetrio server`` (what ``up`` passes on), the
    defaults left out."""
    args: list[str] = []
    if metric_resolution != RESOLUTION:
        args += ["--metric-resolution", str(metric_resolution)]
    if hpa_sync_period != SYNC_PERIOD:
        args += ["--horizontal-pod-autoscaler-sync-period", str(hpa_sync_period)]
    return args


def apply_periods(cluster: Cluster, metric_resolution: float, hpa_sync_period: float) -> None:
    """Set the periods on a running cluster's API server and controller manager (both
    read them at every round)."""
    metrics = cluster.api.resource_metrics
    metrics.resolution = metrics.store.resolution = metric_resolution
    if cluster.controller_manager is not None:
        hpa = cluster.controller_manager.controller(HorizontalController.name)
        assert isinstance(hpa, HorizontalController)
        hpa.sync_period = hpa_sync_period

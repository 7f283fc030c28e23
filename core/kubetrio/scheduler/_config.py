"""Scheduler configuration: profiles, enabled plugins and weights, read from YAML.

The file follows kube-scheduler's ``KubeSchedulerConfiguration``
(``kubescheduler.config.k8s.io/v1``) for the fields kubetrio uses::

    apiVersion: kubescheduler.config.k8s.io/v1
    kind: KubeSchedulerConfiguration
    percentageOfNodesToScore: 0          # 0: adaptive, as kube-scheduler
    podInitialBackoffSeconds: 1
    podMaxBackoffSeconds: 10
    profiles:
      - schedulerName: default-scheduler
        plugins:
          multiPoint:                    # every stage the plugin implements
            disabled: [{name: ImageLocality}]
          score:
            enabled: [{name: NodeAffinity, weight: 5}]
        pluginConfig:
          - name: NodeResourcesFit
            args: {scoringStrategy: {type: MostAllocated}}

Every registered plugin is enabled by default, in every stage it implements, with the
weight it declares (``weight``, else 1); ``disabled: [{name: "*"}]`` turns the defaults
off for a stage (or all stages under ``multiPoint``). Unknown plugin names are errors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

STAGES = (
    "preFilter",
    "filter",
    "postFilter",
    "preScore",
    "score",
    "reserve",
    "preBind",
    "bind",
)
"""The extension points a profile's ``plugins`` may configure (plus ``multiPoint``)."""


class ConfigError(ValueError):
    """The scheduler configuration is malformed; the message names the field."""


@dataclasses.dataclass(frozen=True)
class PluginSet:
    """The ``enabled`` (name → weight or None) and ``disabled`` plugins of one stage."""

    enabled: tuple[tuple[str, int | None], ...] = ()
    disabled: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Profile:
    """One scheduling profile: pods whose ``spec.schedulerName`` is ``scheduler_name``."""

    scheduler_name: str = "default-scheduler"
    plugins: Mapping[str, PluginSet] = dataclasses.field(default_factory=dict)
    """Stage (``multiPoint``, ``filter``, ``score``, …) → its plugin set."""
    plugin_config: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    """Plugin name → the ``args`` its ``configured`` method receives."""
    percentage_of_nodes_to_score: int | None = None


@dataclasses.dataclass(frozen=True)
class SchedulerConfig:
    """The whole configuration (see the module docstring for the YAML form)."""

    profiles: tuple[Profile, ...] = (Profile(),)
    percentage_of_nodes_to_score: int = 0
    """0 means adaptive: ``50 - nodes/125`` percent, at least 5% and 100 nodes."""
    pod_initial_backoff_seconds: float = 1.0
    pod_max_backoff_seconds: float = 10.0
    pod_max_in_unschedulable_seconds: float = 300.0
    parallel_binds: int = 256
    """How many bindings may be in flight at once (kube-scheduler binds in goroutines)."""
    cycle_slice_seconds: float = 0.02
    """How long the scheduler runs cycles back to back before letting other tasks of the
    process (informers, bindings, the API server when embedded) take their turn."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SchedulerConfig:
        """Read a decoded ``KubeSchedulerConfiguration``."""
        if not isinstance(data, Mapping):
            raise ConfigError("the scheduler configuration must be a mapping")
        kind = data.get("kind", "KubeSchedulerConfiguration")
        if kind != "KubeSchedulerConfiguration":
            raise ConfigError(f"kind: expected KubeSchedulerConfiguration, got {kind!r}")
        profiles = tuple(
            _profile(raw, f"profiles[{i}]") for i, raw in enumerate(data.get("profiles") or [])
        ) or (Profile(),)
        names = [p.scheduler_name for p in profiles]
        if len(set(names)) != len(names):
            raise ConfigError(f"profiles: duplicate schedulerName in {names}")
        pct = _int(data, "percentageOfNodesToScore", 0)
        if not 0 <= pct <= 100:
            raise ConfigError("percentageOfNodesToScore: must be between 0 and 100")
        return cls(
            profiles=profiles,
            percentage_of_nodes_to_score=pct,
            pod_initial_backoff_seconds=float(data.get("podInitialBackoffSeconds", 1)),
            pod_max_backoff_seconds=float(data.get("podMaxBackoffSeconds", 10)),
        )

    @classmethod
    def from_yaml(cls, text: str) -> SchedulerConfig:
        """Read the YAML text of a ``KubeSchedulerConfiguration``."""
        return cls.from_dict(yaml.safe_load(text) or {})

    @classmethod
    def load(cls, path: str | Path) -> SchedulerConfig:
        """Read a ``KubeSchedulerConfiguration`` file."""
        return cls.from_yaml(Path(path).read_text())


def _int(data: Mapping[str, Any], key: str, default: int) -> int:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{key}: must be an integer")
    return value


def _plugin_set(raw: Any, where: str) -> PluginSet:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a mapping with enabled/disabled")
    enabled = []
    for i, item in enumerate(raw.get("enabled") or []):
        if not isinstance(item, Mapping) or not item.get("name"):
            raise ConfigError(f"{where}.enabled[{i}]: needs a name")
        weight = item.get("weight")
        if weight is not None and (not isinstance(weight, int) or weight < 0):
            raise ConfigError(f"{where}.enabled[{i}].weight: must be a non-negative integer")
        enabled.append((str(item["name"]), weight))
    disabled = []
    for i, item in enumerate(raw.get("disabled") or []):
        if not isinstance(item, Mapping) or not item.get("name"):
            raise ConfigError(f"{where}.disabled[{i}]: needs a name")
        disabled.append(str(item["name"]))
    return PluginSet(tuple(enabled), tuple(disabled))


def _profile(raw: Any, where: str) -> Profile:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a mapping")
    plugins: dict[str, PluginSet] = {}
    for stage, value in (raw.get("plugins") or {}).items():
        if stage != "multiPoint" and stage not in STAGES:
            raise ConfigError(f"{where}.plugins.{stage}: not an extension point kubetrio has")
        plugins[stage] = _plugin_set(value or {}, f"{where}.plugins.{stage}")
    plugin_config: dict[str, Mapping[str, Any]] = {}
    for i, item in enumerate(raw.get("pluginConfig") or []):
        if not isinstance(item, Mapping) or not item.get("name"):
            raise ConfigError(f"{where}.pluginConfig[{i}]: needs a name")
        plugin_config[str(item["name"])] = item.get("args") or {}
    pct = raw.get("percentageOfNodesToScore")
    if pct is not None and (not isinstance(pct, int) or not 0 <= pct <= 100):
        raise ConfigError(f"{where}.percentageOfNodesToScore: must be between 0 and 100")
    return Profile(
        scheduler_name=str(raw.get("schedulerName") or "default-scheduler"),
        plugins=plugins,
        plugin_config=plugin_config,
        percentage_of_nodes_to_score=pct,
    )

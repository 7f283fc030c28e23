"""Reading Prometheus' text format as a scraper does (``prometheus_client``'s parser)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from tests.compat.kit import KUBECTL_DIR

Series = tuple[str, frozenset[tuple[str, str]]]


def samples(text: str) -> dict[Series, float]:
    """Every sample of an exposition: (name, labels) → value."""
    found: dict[Series, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict[Series, float], metric: str, /, **labels: str) -> float:
    """The sum of the samples of ``metric`` whose labels include ``labels`` (0: none)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in found.items() if n == metric and wanted <= have)


def series(found: dict[Series, float], name: str) -> int:
    """How many series of ``name`` there are."""
    return sum(1 for n, _ in found if n == name)


async def kubectl(version: str, kubeconfig: Path, *args: str) -> tuple[int, str]:
    """Run ``kubectl.<version>`` (isolated from ~/.kube): exit code, stdout and stderr."""
    binary = KUBECTL_DIR / f"kubectl.{version}"
    if not binary.exists():
        pytest.skip(f"needs kubectl.{version}")
    with trio.fail_after(60):
        done = await trio.run_process(
            [str(binary), f"--kubeconfig={kubeconfig}", *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env={**os.environ, "HOME": str(kubeconfig.parent)},
        )
    return done.returncode, done.stdout.decode() + done.stderr.decode()


async def scrape(version: str, kubeconfig: Path, path: str = "/metrics") -> dict[Series, float]:
    """``kubectl get --raw <path>``, parsed."""
    code, out = await kubectl(version, kubeconfig, "get", "--raw", path)
    assert code == 0, out
    return samples(out)

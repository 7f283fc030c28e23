"""benchmarks/scale.py at a small scale: the three processes start, every figure is there.

Only the benchmark's plumbing and the cluster's outcome are checked (every pod Running,
the LISTs return every pod, no node NotReady); how fast is for the benchmark to say.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "scale.py"


def test_scale_benchmark_smoke() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--scale", "0.0005", "--samples", "20"],
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard, not a measurement
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["bench"] == "scale" and result["completed"] is True
    assert (result["nodes"], result["pods"]) == (5, 75)
    # Every pod was created and became Running (available) through the simulated nodes.
    assert 0 < result["pods_created_s"] <= result["pods_running_s"]
    # LISTs read every pod, whole and page by page; one namespace holds them all here.
    assert result["list_cluster_items"] == result["list_cluster_paged_items"] == 75
    assert result["list_namespaced_items"] == result["list_namespaced_paged_items"] == 75
    ratios = {k: v for k, v in result.items() if k.endswith("_vs_slo")}
    assert len(ratios) == 6 and all(v > 0 for v in ratios.values()), ratios
    assert result["lease_samples"] >= 2 and result["lease_max_age_s"] > 0
    assert result["nodes_not_ready"] == 0
    assert result["server_rss_mb"] > 0 and result["store_sqlite_mb"] > 0
    assert result["store_file_mb"] > 0 and result["nodes_rss_mb"] > 0

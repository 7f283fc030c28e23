"""Fixtures of the CSI adapter tests: the directory-backed CSI driver on a unix socket."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubetrio_csi.driver import CSIDriver

from tests.csi.dirdriver import NAME, DirDriver


@pytest.fixture
def sockets() -> Iterator[Path]:
    """A short directory for sockets (a unix socket path has at most 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="csi-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def driver(tmp_path: Path, sockets: Path) -> Iterator[DirDriver]:
    """The test driver, serving on ``<sockets>/csi.sock``."""
    with DirDriver(tmp_path / "driver", sockets / "csi.sock") as running:
        yield running


@pytest.fixture
def adapter(driver: DirDriver) -> Iterator[CSIDriver]:
    """The adapter, pointed at the test driver."""
    made = CSIDriver(NAME, str(driver.socket), timeout=10)
    yield made
    made.close()

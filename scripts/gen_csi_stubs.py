#!/usr/bin/env python3
"""Generate the CSI adapter's Python modules from ``plugins/csi/kubetrio_csi/csi.proto``.

Usage: ``python scripts/gen_csi_stubs.py [--check]``

Runs ``grpc_tools.protoc`` (pinned to one version in the root ``test`` extra) and
writes ``csi_pb2.py`` (messages), ``csi_pb2.pyi`` (their types, for mypy) and
``csi_pb2_grpc.py`` (client stubs and servicer base classes) beside the proto. ``--check``
regenerates into a temporary folder and exits non-zero when the committed files differ
(``make lint`` runs it): the same grpcio-tools version reproduces them byte for byte.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.metadata
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLUGIN = REPO / "plugins" / "csi"
PACKAGE = "kubetrio_csi"
OUTPUTS = ("csi_pb2.py", "csi_pb2.pyi", "csi_pb2_grpc.py")
PINNED = "1.84.0"
"""The grpcio-tools version the committed files come from (the ``test`` extra pins it)."""


def generate(out: Path) -> None:
    """Run protoc on the proto; write the modules under ``out/kubetrio_csi``."""
    from grpc_tools import protoc  # the test extra; imported here so --help works without it

    # The proto is compiled as ``kubetrio_csi/csi.proto`` from the distribution's root, so
    # csi_pb2_grpc.py imports ``from kubetrio_csi import csi_pb2`` (not a top-level module).
    include = Path(protoc.__file__).parent / "_proto"  # descriptor.proto, wrappers.proto
    (out / PACKAGE).mkdir(parents=True, exist_ok=True)
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PLUGIN}",
            f"-I{include}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            f"{PACKAGE}/csi.proto",
        ]
    )
    if code != 0:
        raise SystemExit(f"protoc failed with status {code}")


def main() -> int:
    """Generate, or with ``--check`` compare with the committed files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the files differ")
    args = parser.parse_args()
    try:
        version = importlib.metadata.version("grpcio-tools")
    except importlib.metadata.PackageNotFoundError:
        print("grpcio-tools is not installed: pip install -e '.[test]'", file=sys.stderr)
        return 2
    if version != PINNED:
        print(f"grpcio-tools {version} is installed; the stubs come from {PINNED}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        stale = []
        for name in OUTPUTS:
            fresh = Path(tmp) / PACKAGE / name
            committed = PLUGIN / PACKAGE / name
            if args.check:
                if not committed.exists() or not filecmp.cmp(fresh, committed, shallow=False):
                    stale.append(str(committed.relative_to(REPO)))
            else:
                shutil.copyfile(fresh, committed)
    if stale:
        print(
            "stale generated CSI modules (run scripts/gen_csi_stubs.py): " + ", ".join(stale),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

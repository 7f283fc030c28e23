"""The committed field table is what scripts/gen_proto_fields.py makes of the schemas."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from kubetrio.apiserver.protobuf._fields import INLINE, KINDS, LIST_WRAPPERS, MESSAGES, OMIT_ZERO

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gen_proto_fields.py"
K8S = REPO / "third_party" / "kubernetes"


def test_generator_reproduces_the_committed_table() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr + result.stdout


def test_every_proto_field_is_in_the_table() -> None:
    spec = importlib.util.spec_from_file_location("gen_proto_fields", SCRIPT)
    assert spec and spec.loader
    generator = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = generator  # dataclasses look their module up there
    try:
        spec.loader.exec_module(generator)
    finally:
        del sys.modules[spec.name]
    count = 0
    for path in (K8S / "proto").rglob("*.proto"):
        package, messages = generator.parse_proto(path.read_text())
        for message in messages:
            fields = MESSAGES[f"{package}.{message.name}"]
            assert sorted(fields) == sorted(f.number for f in message.fields)
            count += len(fields)
    assert count > 4000


def test_json_names_that_differ_from_proto_names() -> None:
    # Proto names that are not the JSON names, found through the swagger.
    assert MESSAGES["k8s.io.api.authentication.v1.BoundObjectReference"][4][0] == "uid"
    ref = MESSAGES["k8s.io.api.networking.v1.IngressClassParametersReference"]
    assert ref[1][0] == "apiGroup"
    assert MESSAGES["k8s.io.api.admissionregistration.v1beta1.Validation"][1][0] == "expression"


def test_inline_and_zero_flags() -> None:
    assert MESSAGES["k8s.io.api.core.v1.Volume"][2][2] & INLINE
    assert MESSAGES["k8s.io.api.core.v1.Probe"][1][2] & INLINE
    assert not MESSAGES["k8s.io.api.core.v1.PodSpec"][1][2] & INLINE
    deployment_spec = MESSAGES["k8s.io.api.apps.v1.DeploymentSpec"]
    assert not deployment_spec[1][2] & OMIT_ZERO  # replicas *int32
    assert deployment_spec[5][2] & OMIT_ZERO  # minReadySeconds int32 omitempty
    assert not MESSAGES["k8s.io.api.core.v1.ContainerPort"][3][2] & OMIT_ZERO  # no omitempty


def test_kinds_and_wrappers() -> None:
    assert KINDS[("apps/v1", "Deployment")] == "k8s.io.api.apps.v1.Deployment"
    assert KINDS[("v1", "Secret")] == "k8s.io.api.core.v1.Secret"
    assert KINDS[("v1", "DeleteOptions")] == "k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions"
    assert "k8s.io.apimachinery.pkg.apis.meta.v1.Verbs" in LIST_WRAPPERS
    assert "k8s.io.api.authorization.v1.ExtraValue" in LIST_WRAPPERS

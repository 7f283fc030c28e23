#!/usr/bin/env python3
"""Generate the protobuf field table the API server decodes kubectl's protobuf bodies with.

Reads every ``generated.proto`` under ``<k8s>/proto`` (k8s.io/api and apimachinery) and
``<k8s>/swagger.json``, and writes ``core/kubetrio/apiserver/protobuf/_fields.py``:

- ``MESSAGES``: message name → field number → ``(json name, type, flags)``;
- ``KINDS``: ``(apiVersion, kind)`` → top-level message name (from the swagger's
  ``x-kubernetes-group-version-kind``);
- ``LIST_WRAPPERS``: messages that are Go named slices (``Verbs``, ``ExtraValue``): one
  ``repeated items = 1`` on the wire, a plain JSON array in JSON.

JSON names come from the swagger: the proto name when the swagger has it, else the one
swagger property that matches it case-insensitively (``uID`` → ``uid``); a message field
the swagger lacks, whose own fields the swagger lists in the parent, is Go's
``json:",inline"`` and is flattened into it. Versions the swagger no longer describes
(v1alpha1, v1beta1) take names and inlining from the same type in another version of the
group; fields newer than the swagger get their proto name with a lowered first letter.
(Checked once against the Go struct tags: all ~4,200 fields agree except
extensions/v1beta1 ``IngressRule``'s inline, a version no server has served since 1.22.)

Zero scalars: Go's protobuf encoder writes every non-pointer scalar, even ``""``/``0``/
``false``, but its JSON encoder drops those whose tag says ``omitempty``; pointer scalars
are written only when set, and an explicit zero there is meaningful (``replicas: 0``).
Neither the .proto nor the swagger says which fields are pointers, so ``_OMIT_ZERO``
below lists the non-pointer ``omitempty`` scalars — facts read off the Go struct tags of
k8s.io/api and apimachinery — and the table marks them ``OMIT_ZERO``. Every other scalar
keeps whatever the wire carries.

Usage: ``scripts/gen_proto_fields.py [--k8s DIR] [--out FILE] [--check]``. Re-running it
on the same inputs reproduces the committed file byte for byte; ``--check`` fails when
the committed file is stale.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_K8S = REPO / "third_party" / "kubernetes"
DEFAULT_OUT = REPO / "core" / "kubetrio" / "apiserver" / "protobuf" / "_fields.py"

SCALARS = ("string", "bytes", "bool", "int32", "int64", "uint32", "uint64", "sint32", "sint64")
REPEATED, MAP, OMIT_ZERO, INLINE = 1, 2, 4, 8

_FIELD = re.compile(r"^\s+(optional|repeated) ([.\w]+) (\w+) = (\d+);$")
_MAP_FIELD = re.compile(r"^\s+map<(\w+), ([.\w]+)> (\w+) = (\d+);$")


@dataclass
class ProtoField:
    """One field of a .proto message."""

    name: str
    number: int
    type: str
    repeated: bool = False
    map_key: str | None = None


@dataclass
class ProtoMessage:
    """One .proto message with the ``+protobuf`` markers of its comment."""

    name: str
    fields: list[ProtoField] = field(default_factory=list)
    markers: set[str] = field(default_factory=set)


def parse_proto(text: str) -> tuple[str, list[ProtoMessage]]:
    """The package and messages of one k8s ``generated.proto`` (flat, proto2, no nesting)."""
    package = ""
    messages: list[ProtoMessage] = []
    current: ProtoMessage | None = None
    comment: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("//"):
            comment.append(stripped[2:].strip())
            continue
        if stripped.startswith("package "):
            package = stripped.removeprefix("package ").rstrip(";")
        elif stripped.startswith("message "):
            name = stripped.split()[1]
            current = ProtoMessage(name, markers={c for c in comment if c.startswith("+protobuf")})
            messages.append(current)
        elif stripped == "}":
            current = None
        elif current is not None and (m := _FIELD.match(line)):
            label, type_, name, number = m.groups()
            current.fields.append(ProtoField(name, int(number), type_, label == "repeated"))
        elif current is not None and (m := _MAP_FIELD.match(line)):
            key, value, name, number = m.groups()
            current.fields.append(ProtoField(name, int(number), value, map_key=key))
        elif current is not None and stripped:
            raise SystemExit(f"unparsed line in message {current.name}: {line!r}")
        comment = []
    return package, messages


def resolve(type_: str, package: str) -> str:
    """A field type as a full message name (or the scalar name)."""
    if type_ in SCALARS:
        return type_
    if type_.startswith("."):
        return type_[1:]
    return f"{package}.{type_}"


def swagger_name(message: str) -> str:
    """``k8s.io.api.apps.v1.Deployment`` → ``io.k8s.api.apps.v1.Deployment``."""
    return "io.k8s." + message.removeprefix("k8s.io.")


def omit_zero_fields() -> set[str]:
    """``_OMIT_ZERO`` as a set of full ``package.Message.field`` names."""
    return {
        f"{package}.{entry}" for package, entries in _OMIT_ZERO.items() for entry in entries.split()
    }


def go_json_name(proto_name: str) -> str:
    """Without a swagger to ask: k8s JSON names are lowerCamel, proto names mostly are too
    (``Expression`` is the odd one out), so lower a leading capital."""
    return proto_name[:1].lower() + proto_name[1:]


def group_and_name(message: str) -> tuple[str, str]:
    """``k8s.io.api.apps.v1beta1.Deployment`` → (``k8s.io.api.apps``, ``Deployment``)."""
    package, _, name = message.rpartition(".")
    return package.rpartition(".")[0], name


def inlined(message: ProtoMessage | None, properties: dict[str, object]) -> bool:
    """Whether a message field the swagger lacks is Go-inlined: its own fields are there."""
    return message is not None and any(f.name in properties for f in message.fields)


def build(k8s: Path) -> str:
    """The text of ``_fields.py`` for the schemas under ``k8s``."""
    messages: dict[str, ProtoMessage] = {}
    packages: dict[str, str] = {}
    for path in sorted((k8s / "proto").rglob("*.proto")):
        package, parsed = parse_proto(path.read_text())
        for message in parsed:
            full = f"{package}.{message.name}"
            messages[full] = message
            packages[full] = package
    definitions = json.loads((k8s / "swagger.json").read_text())["definitions"]
    omit_zero = omit_zero_fields()
    used_omit_zero: set[str] = set()
    problems: list[str] = []
    newer: list[str] = []

    table: dict[str, list[tuple[int, str, str, int]]] = {}
    # proto field → (JSON name, INLINE flag), for messages the swagger describes: versions
    # it no longer serves (v1alpha1, v1beta1) take their names from a sibling version.
    naming: dict[tuple[str, str, str], tuple[str, int]] = {}
    wrappers: list[str] = []
    described = sorted(m for m in messages if swagger_name(m) in definitions)
    for full in described + sorted(m for m in messages if swagger_name(m) not in definitions):
        message = messages[full]
        package = packages[full]
        if "+protobuf.nullable=true" in message.markers and [f.name for f in message.fields] == [
            "items"
        ]:
            wrappers.append(full)
        definition = definitions.get(swagger_name(full))
        properties: dict[str, Any] = (definition or {}).get("properties", {})
        rows = []
        for f in sorted(message.fields, key=lambda f: f.number):
            type_ = resolve(f.type, package)
            flags = (REPEATED if f.repeated else 0) | (MAP if f.map_key else 0)
            json_name = f.name
            if definition is None:
                json_name, inline = naming.get((*group_and_name(full), f.name), (f.name, 0))
                flags |= inline
                json_name = go_json_name(json_name)
            elif f.name not in properties:
                matches = [p for p in properties if p.lower() == f.name.lower()]
                if len(matches) == 1:
                    json_name = matches[0]
                elif inlined(messages.get(type_), properties) and not f.repeated:
                    flags |= INLINE
                else:
                    # The .proto files are newer than the swagger for a few alpha fields.
                    newer.append(f"{full}.{f.name}")
                    json_name = go_json_name(f.name)
            if definition is not None:
                naming.setdefault((*group_and_name(full), f.name), (json_name, flags & INLINE))
            if type_ in SCALARS and not f.repeated and not f.map_key:
                key = f"{full}.{f.name}"
                if key in omit_zero:
                    flags |= OMIT_ZERO
                    used_omit_zero.add(key)
            if f.map_key is not None and f.map_key != "string":
                problems.append(f"{full}.{f.name}: map key {f.map_key} is not string")
            rows.append((f.number, json_name, type_, flags))
        table[full] = rows

    kinds: dict[tuple[str, str], str] = {}
    for full in messages:
        for gvk in definitions.get(swagger_name(full), {}).get(
            "x-kubernetes-group-version-kind", []
        ):
            group, version = gvk["group"], gvk["version"]
            api_version = f"{group}/{version}" if group else version
            # meta/v1 types (DeleteOptions, Status) are listed under every group; the
            # message in the group's own package wins where one exists.
            if packages[full].endswith(f".{version}") or (api_version, gvk["kind"]) not in kinds:
                kinds.setdefault((api_version, gvk["kind"]), full)

    for key in sorted(omit_zero - used_omit_zero):
        problems.append(f"{key}: listed in _OMIT_ZERO but not a scalar field")
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if newer:
        print(f"note: {len(newer)} proto fields are newer than the swagger; named as in Go")
    return render(table, kinds, wrappers)


def render(
    table: dict[str, list[tuple[int, str, str, int]]],
    kinds: dict[tuple[str, str], str],
    wrappers: list[str],
) -> str:
    """The module text: plain literals, one field per line, ruff-format clean."""
    out = [
        "# Generated by scripts/gen_proto_fields.py — do not edit",
        '"""Protobuf field table of the Kubernetes API types (from the k8s generated.proto files).',
        "",
        "``MESSAGES[message][number] = (json name, type, flags)``: type is a scalar name or a",
        "full message name; flags are ``REPEATED``, ``MAP`` (type is the value type, keys are",
        "strings), ``OMIT_ZERO`` (Go's JSON omits a zero value) and ``INLINE`` (Go's",
        '``json:",inline"``: the message\'s fields are merged into the parent).',
        '"""',
        "",
        "from typing import Final",
        "",
        f"REPEATED: Final = {REPEATED}",
        f"MAP: Final = {MAP}",
        f"OMIT_ZERO: Final = {OMIT_ZERO}",
        f"INLINE: Final = {INLINE}",
        "",
        "MESSAGES: Final[dict[str, dict[int, tuple[str, str, int]]]] = {",
    ]
    for name, rows in sorted(table.items()):
        if not rows:
            out.append(f'    "{name}": {{}},')
            continue
        out.append(f'    "{name}": {{')
        for number, json_name, type_, flags in rows:
            entry = f'        {number}: ("{json_name}", "{type_}", {flags}),'
            if len(entry) > 100:
                out += [
                    f"        {number}: (",
                    f'            "{json_name}",',
                    f'            "{type_}",',
                    f"            {flags},",
                    "        ),",
                ]
            else:
                out.append(entry)
        out.append("    },")
    out += ["}", "", "KINDS: Final[dict[tuple[str, str], str]] = {"]
    for (api_version, kind), name in sorted(kinds.items()):
        entry = f'    ("{api_version}", "{kind}"): "{name}",'
        if len(entry) > 100:
            out.append(f'    ("{api_version}", "{kind}"): (')
            out.append(f'        "{name}"')
            out.append("    ),")
        else:
            out.append(entry)
    out += ["}", "", "LIST_WRAPPERS: Final[frozenset[str]] = frozenset("]
    out.append("    {")
    out += [f'        "{name}",' for name in wrappers]
    out += ["    }", ")", ""]
    return "\n".join(out)


def main() -> None:
    """Write (or with ``--check`` verify) the generated table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--k8s", type=Path, default=DEFAULT_K8S, help="dir with proto/ and swagger.json"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="fail if --out is not up to date")
    args = parser.parse_args()
    text = build(args.k8s)
    if args.check:
        if not args.out.exists() or args.out.read_text() != text:
            raise SystemExit(f"{args.out} is stale: run scripts/gen_proto_fields.py")
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


# Non-pointer scalar fields with ``omitempty`` in their Go JSON tag, by proto package:
# ``Message.protoField`` (from the k8s.io/api and k8s.io/apimachinery struct tags).
_OMIT_ZERO: dict[str, str] = {
    "k8s.io.api.admission.v1": """
        AdmissionRequest.name AdmissionRequest.namespace AdmissionRequest.requestSubResource
        AdmissionRequest.subResource AdmissionResponse.patch
    """,
    "k8s.io.api.admission.v1beta1": """
        AdmissionRequest.name AdmissionRequest.namespace AdmissionRequest.requestSubResource
        AdmissionRequest.subResource AdmissionResponse.patch
    """,
    "k8s.io.api.admissionregistration.v1": """
        ApplyConfiguration.expression JSONPatch.expression
        MutatingAdmissionPolicyBindingSpec.policyName
        MutatingAdmissionPolicySpec.reinvocationPolicy ParamKind.apiVersion ParamKind.kind
        ParamRef.name ParamRef.namespace ValidatingAdmissionPolicyBindingSpec.policyName
        ValidatingAdmissionPolicyStatus.observedGeneration Validation.message
        Validation.messageExpression WebhookClientConfig.caBundle
    """,
    "k8s.io.api.admissionregistration.v1alpha1": """
        ApplyConfiguration.expression JSONPatch.expression
        MutatingAdmissionPolicyBindingSpec.policyName
        MutatingAdmissionPolicySpec.reinvocationPolicy ParamKind.apiVersion ParamKind.kind
        ParamRef.name ParamRef.namespace ValidatingAdmissionPolicyBindingSpec.policyName
        ValidatingAdmissionPolicyStatus.observedGeneration Validation.message
        Validation.messageExpression
    """,
    "k8s.io.api.admissionregistration.v1beta1": """
        ApplyConfiguration.expression JSONPatch.expression
        MutatingAdmissionPolicyBindingSpec.policyName
        MutatingAdmissionPolicySpec.reinvocationPolicy ParamKind.apiVersion ParamKind.kind
        ParamRef.name ParamRef.namespace ValidatingAdmissionPolicyBindingSpec.policyName
        ValidatingAdmissionPolicyStatus.observedGeneration Validation.message
        Validation.messageExpression WebhookClientConfig.caBundle
    """,
    "k8s.io.api.apidiscovery.v2": """
        APIVersionDiscovery.freshness
    """,
    "k8s.io.api.apidiscovery.v2beta1": """
        APIVersionDiscovery.freshness
    """,
    "k8s.io.api.apiserverinternal.v1alpha1": """
        ServerStorageVersion.apiServerID ServerStorageVersion.encodingVersion
        StorageVersionCondition.message StorageVersionCondition.observedGeneration
    """,
    "k8s.io.api.apps.v1": """
        DaemonSetCondition.message DaemonSetCondition.reason DaemonSetSpec.minReadySeconds
        DaemonSetStatus.numberAvailable DaemonSetStatus.numberUnavailable
        DaemonSetStatus.observedGeneration DaemonSetStatus.updatedNumberScheduled
        DaemonSetUpdateStrategy.type DeploymentCondition.message DeploymentCondition.reason
        DeploymentSpec.minReadySeconds DeploymentSpec.paused DeploymentStatus.availableReplicas
        DeploymentStatus.observedGeneration DeploymentStatus.readyReplicas
        DeploymentStatus.replicas DeploymentStatus.unavailableReplicas
        DeploymentStatus.updatedReplicas DeploymentStrategy.type ReplicaSetCondition.message
        ReplicaSetCondition.reason ReplicaSetSpec.minReadySeconds
        ReplicaSetStatus.availableReplicas ReplicaSetStatus.fullyLabeledReplicas
        ReplicaSetStatus.observedGeneration ReplicaSetStatus.readyReplicas
        StatefulSetCondition.message StatefulSetCondition.reason
        StatefulSetPersistentVolumeClaimRetentionPolicy.whenDeleted
        StatefulSetPersistentVolumeClaimRetentionPolicy.whenScaled StatefulSetSpec.minReadySeconds
        StatefulSetSpec.podManagementPolicy StatefulSetStatus.currentReplicas
        StatefulSetStatus.currentRevision StatefulSetStatus.observedGeneration
        StatefulSetStatus.readyReplicas StatefulSetStatus.updateRevision
        StatefulSetStatus.updatedReplicas StatefulSetUpdateStrategy.type
    """,
    "k8s.io.api.apps.v1beta1": """
        DeploymentCondition.message DeploymentCondition.reason DeploymentSpec.minReadySeconds
        DeploymentSpec.paused DeploymentStatus.availableReplicas
        DeploymentStatus.observedGeneration DeploymentStatus.readyReplicas
        DeploymentStatus.replicas DeploymentStatus.unavailableReplicas
        DeploymentStatus.updatedReplicas DeploymentStrategy.type RollbackConfig.revision
        ScaleSpec.replicas ScaleStatus.targetSelector StatefulSetCondition.message
        StatefulSetCondition.reason StatefulSetPersistentVolumeClaimRetentionPolicy.whenDeleted
        StatefulSetPersistentVolumeClaimRetentionPolicy.whenScaled StatefulSetSpec.minReadySeconds
        StatefulSetSpec.podManagementPolicy StatefulSetStatus.currentReplicas
        StatefulSetStatus.currentRevision StatefulSetStatus.readyReplicas
        StatefulSetStatus.updateRevision StatefulSetStatus.updatedReplicas
        StatefulSetUpdateStrategy.type
    """,
    "k8s.io.api.apps.v1beta2": """
        DaemonSetCondition.message DaemonSetCondition.reason DaemonSetSpec.minReadySeconds
        DaemonSetStatus.numberAvailable DaemonSetStatus.numberUnavailable
        DaemonSetStatus.observedGeneration DaemonSetStatus.updatedNumberScheduled
        DaemonSetUpdateStrategy.type DeploymentCondition.message DeploymentCondition.reason
        DeploymentSpec.minReadySeconds DeploymentSpec.paused DeploymentStatus.availableReplicas
        DeploymentStatus.observedGeneration DeploymentStatus.readyReplicas
        DeploymentStatus.replicas DeploymentStatus.unavailableReplicas
        DeploymentStatus.updatedReplicas DeploymentStrategy.type ReplicaSetCondition.message
        ReplicaSetCondition.reason ReplicaSetSpec.minReadySeconds
        ReplicaSetStatus.availableReplicas ReplicaSetStatus.fullyLabeledReplicas
        ReplicaSetStatus.observedGeneration ReplicaSetStatus.readyReplicas ScaleSpec.replicas
        ScaleStatus.targetSelector StatefulSetCondition.message StatefulSetCondition.reason
        StatefulSetPersistentVolumeClaimRetentionPolicy.whenDeleted
        StatefulSetPersistentVolumeClaimRetentionPolicy.whenScaled StatefulSetSpec.minReadySeconds
        StatefulSetSpec.podManagementPolicy StatefulSetStatus.currentReplicas
        StatefulSetStatus.currentRevision StatefulSetStatus.observedGeneration
        StatefulSetStatus.readyReplicas StatefulSetStatus.updateRevision
        StatefulSetStatus.updatedReplicas StatefulSetUpdateStrategy.type
    """,
    "k8s.io.api.authentication.v1": """
        BoundObjectReference.apiVersion BoundObjectReference.kind BoundObjectReference.name
        BoundObjectReference.uID TokenReviewSpec.token TokenReviewStatus.authenticated
        TokenReviewStatus.error UserInfo.uid UserInfo.username
    """,
    "k8s.io.api.authentication.v1beta1": """
        TokenReviewSpec.token TokenReviewStatus.authenticated TokenReviewStatus.error UserInfo.uid
        UserInfo.username
    """,
    "k8s.io.api.authorization.v1": """
        FieldSelectorAttributes.rawSelector LabelSelectorAttributes.rawSelector
        NonResourceAttributes.path NonResourceAttributes.verb ResourceAttributes.group
        ResourceAttributes.name ResourceAttributes.namespace ResourceAttributes.resource
        ResourceAttributes.subresource ResourceAttributes.verb ResourceAttributes.version
        SelfSubjectRulesReviewSpec.namespace SubjectAccessReviewSpec.uid
        SubjectAccessReviewSpec.user SubjectAccessReviewStatus.denied
        SubjectAccessReviewStatus.evaluationError SubjectAccessReviewStatus.reason
        SubjectRulesReviewStatus.evaluationError
    """,
    "k8s.io.api.authorization.v1beta1": """
        NonResourceAttributes.path NonResourceAttributes.verb ResourceAttributes.group
        ResourceAttributes.name ResourceAttributes.namespace ResourceAttributes.resource
        ResourceAttributes.subresource ResourceAttributes.verb ResourceAttributes.version
        SelfSubjectRulesReviewSpec.namespace SubjectAccessReviewSpec.uid
        SubjectAccessReviewSpec.user SubjectAccessReviewStatus.denied
        SubjectAccessReviewStatus.evaluationError SubjectAccessReviewStatus.reason
        SubjectRulesReviewStatus.evaluationError
    """,
    "k8s.io.api.autoscaling.v1": """
        CrossVersionObjectReference.apiVersion HorizontalPodAutoscalerCondition.message
        HorizontalPodAutoscalerCondition.reason ScaleSpec.replicas ScaleStatus.selector
    """,
    "k8s.io.api.autoscaling.v2": """
        CrossVersionObjectReference.apiVersion HorizontalPodAutoscalerCondition.message
        HorizontalPodAutoscalerCondition.reason HorizontalPodAutoscalerStatus.currentReplicas
    """,
    "k8s.io.api.batch.v1": """
        CronJobSpec.concurrencyPolicy JobCondition.message JobCondition.reason JobStatus.active
        JobStatus.completedIndexes JobStatus.failed JobStatus.succeeded
    """,
    "k8s.io.api.batch.v1beta1": """
        CronJobSpec.concurrencyPolicy
    """,
    "k8s.io.api.certificates.v1": """
        CertificateSigningRequestCondition.message CertificateSigningRequestCondition.reason
        CertificateSigningRequestSpec.uid CertificateSigningRequestSpec.username
        CertificateSigningRequestStatus.certificate ClusterTrustBundleSpec.signerName
        PodCertificateRequestStatus.certificateChain
    """,
    "k8s.io.api.certificates.v1alpha1": """
        ClusterTrustBundleSpec.signerName
    """,
    "k8s.io.api.certificates.v1beta1": """
        CertificateSigningRequestCondition.message CertificateSigningRequestCondition.reason
        CertificateSigningRequestSpec.uid CertificateSigningRequestSpec.username
        CertificateSigningRequestStatus.certificate ClusterTrustBundleSpec.signerName
        PodCertificateRequestStatus.certificateChain
    """,
    "k8s.io.api.coordination.v1alpha2": """
        LeaseCandidateSpec.emulationVersion LeaseCandidateSpec.strategy
    """,
    "k8s.io.api.coordination.v1beta1": """
        LeaseCandidateSpec.emulationVersion LeaseCandidateSpec.strategy
    """,
    "k8s.io.api.core.v1": """
        AWSElasticBlockStoreVolumeSource.fsType AWSElasticBlockStoreVolumeSource.partition
        AWSElasticBlockStoreVolumeSource.readOnly AzureFilePersistentVolumeSource.readOnly
        AzureFileVolumeSource.readOnly CSIPersistentVolumeSource.fsType
        CSIPersistentVolumeSource.readOnly CephFSPersistentVolumeSource.path
        CephFSPersistentVolumeSource.readOnly CephFSPersistentVolumeSource.secretFile
        CephFSPersistentVolumeSource.user CephFSVolumeSource.path CephFSVolumeSource.readOnly
        CephFSVolumeSource.secretFile CephFSVolumeSource.user CinderPersistentVolumeSource.fsType
        CinderPersistentVolumeSource.readOnly CinderVolumeSource.fsType
        CinderVolumeSource.readOnly ComponentCondition.error ComponentCondition.message
        ConfigMapNodeConfigSource.resourceVersion ConfigMapNodeConfigSource.uid Container.image
        Container.imagePullPolicy Container.stdin Container.stdinOnce
        Container.terminationMessagePath Container.terminationMessagePolicy Container.tty
        Container.workingDir ContainerImage.sizeBytes ContainerPort.hostIP ContainerPort.hostPort
        ContainerPort.name ContainerPort.protocol ContainerRestartRule.action
        ContainerRestartRuleOnExitCodes.operator ContainerStateTerminated.containerID
        ContainerStateTerminated.message ContainerStateTerminated.reason
        ContainerStateTerminated.signal ContainerStateWaiting.message ContainerStateWaiting.reason
        ContainerStatus.containerID EmptyDirVolumeSource.medium EndpointAddress.hostname
        EndpointPort.name EndpointPort.protocol EnvFromSource.prefix EnvVar.value
        EphemeralContainer.targetContainerName EphemeralContainerCommon.image
        EphemeralContainerCommon.imagePullPolicy EphemeralContainerCommon.stdin
        EphemeralContainerCommon.stdinOnce EphemeralContainerCommon.terminationMessagePath
        EphemeralContainerCommon.terminationMessagePolicy EphemeralContainerCommon.tty
        EphemeralContainerCommon.workingDir Event.action Event.count Event.message Event.reason
        Event.type EventSeries.count EventSource.component EventSource.host FCVolumeSource.fsType
        FCVolumeSource.readOnly FlexPersistentVolumeSource.fsType
        FlexPersistentVolumeSource.readOnly FlexVolumeSource.fsType FlexVolumeSource.readOnly
        FlockerVolumeSource.datasetName FlockerVolumeSource.datasetUUID
        GCEPersistentDiskVolumeSource.fsType GCEPersistentDiskVolumeSource.partition
        GCEPersistentDiskVolumeSource.readOnly GitRepoVolumeSource.directory
        GitRepoVolumeSource.revision GlusterfsPersistentVolumeSource.readOnly
        GlusterfsVolumeSource.readOnly HTTPGetAction.host HTTPGetAction.path HTTPGetAction.scheme
        ISCSIPersistentVolumeSource.chapAuthDiscovery ISCSIPersistentVolumeSource.chapAuthSession
        ISCSIPersistentVolumeSource.fsType ISCSIPersistentVolumeSource.iscsiInterface
        ISCSIPersistentVolumeSource.readOnly ISCSIVolumeSource.chapAuthDiscovery
        ISCSIVolumeSource.chapAuthSession ISCSIVolumeSource.fsType
        ISCSIVolumeSource.iscsiInterface ISCSIVolumeSource.readOnly ImageVolumeSource.pullPolicy
        ImageVolumeSource.reference ImageVolumeStatus.imageRef LoadBalancerIngress.hostname
        LoadBalancerIngress.ip LocalObjectReference.name
        ModifyVolumeStatus.targetVolumeAttributesClassName NFSVolumeSource.readOnly
        NamespaceCondition.message NamespaceCondition.reason NamespaceStatus.phase
        NodeCondition.message NodeCondition.reason NodeConfigStatus.error NodeProxyOptions.path
        NodeSpec.externalID NodeSpec.podCIDR NodeSpec.providerID NodeSpec.unschedulable
        NodeStatus.phase ObjectFieldSelector.apiVersion ObjectReference.apiVersion
        ObjectReference.fieldPath ObjectReference.kind ObjectReference.name
        ObjectReference.namespace ObjectReference.resourceVersion ObjectReference.uid
        PersistentVolumeClaimCondition.message PersistentVolumeClaimCondition.reason
        PersistentVolumeClaimSpec.volumeName PersistentVolumeClaimStatus.phase
        PersistentVolumeClaimVolumeSource.readOnly
        PersistentVolumeSpec.persistentVolumeReclaimPolicy PersistentVolumeSpec.storageClassName
        PersistentVolumeStatus.message PersistentVolumeStatus.phase PersistentVolumeStatus.reason
        PhotonPersistentDiskVolumeSource.fsType PodAttachOptions.container PodAttachOptions.stderr
        PodAttachOptions.stdin PodAttachOptions.stdout PodAttachOptions.tty
        PodCertificateProjection.certificateChainPath
        PodCertificateProjection.credentialBundlePath PodCertificateProjection.keyPath
        PodCertificateProjection.keyType PodCertificateProjection.signerName PodCondition.message
        PodCondition.observedGeneration PodCondition.reason PodDNSConfigOption.name
        PodExecOptions.container PodExecOptions.stderr PodExecOptions.stdin PodExecOptions.stdout
        PodExecOptions.tty PodLogOptions.container PodLogOptions.follow
        PodLogOptions.insecureSkipTLSVerifyBackend PodLogOptions.previous PodLogOptions.timestamps
        PodProxyOptions.path PodSpec.dnsPolicy PodSpec.hostIPC PodSpec.hostNetwork PodSpec.hostPID
        PodSpec.hostname PodSpec.nodeName PodSpec.priorityClassName PodSpec.restartPolicy
        PodSpec.schedulerName PodSpec.serviceAccount PodSpec.serviceAccountName PodSpec.subdomain
        PodStatus.hostIP PodStatus.message PodStatus.nominatedNodeName
        PodStatus.observedGeneration PodStatus.phase PodStatus.podIP PodStatus.qosClass
        PodStatus.reason PodStatus.resize PortworxVolumeSource.fsType
        PortworxVolumeSource.readOnly PreferAvoidPodsEntry.message PreferAvoidPodsEntry.reason
        Probe.failureThreshold Probe.initialDelaySeconds Probe.periodSeconds
        Probe.successThreshold Probe.timeoutSeconds QuobyteVolumeSource.group
        QuobyteVolumeSource.readOnly QuobyteVolumeSource.tenant QuobyteVolumeSource.user
        RBDPersistentVolumeSource.fsType RBDPersistentVolumeSource.keyring
        RBDPersistentVolumeSource.pool RBDPersistentVolumeSource.readOnly
        RBDPersistentVolumeSource.user RBDVolumeSource.fsType RBDVolumeSource.keyring
        RBDVolumeSource.pool RBDVolumeSource.readOnly RBDVolumeSource.user
        ReplicationControllerCondition.message ReplicationControllerCondition.reason
        ReplicationControllerSpec.minReadySeconds ReplicationControllerStatus.availableReplicas
        ReplicationControllerStatus.fullyLabeledReplicas
        ReplicationControllerStatus.observedGeneration ReplicationControllerStatus.readyReplicas
        ResourceClaim.request ResourceFieldSelector.containerName ResourceHealth.health
        SELinuxOptions.level SELinuxOptions.role SELinuxOptions.type SELinuxOptions.user
        ScaleIOPersistentVolumeSource.fsType ScaleIOPersistentVolumeSource.protectionDomain
        ScaleIOPersistentVolumeSource.readOnly ScaleIOPersistentVolumeSource.sslEnabled
        ScaleIOPersistentVolumeSource.storageMode ScaleIOPersistentVolumeSource.storagePool
        ScaleIOPersistentVolumeSource.volumeName ScaleIOVolumeSource.fsType
        ScaleIOVolumeSource.protectionDomain ScaleIOVolumeSource.readOnly
        ScaleIOVolumeSource.sslEnabled ScaleIOVolumeSource.storageMode
        ScaleIOVolumeSource.storagePool ScaleIOVolumeSource.volumeName Secret.type
        SecretReference.name SecretReference.namespace SecretVolumeSource.secretName
        ServiceAccountTokenProjection.audience ServicePort.name ServicePort.nodePort
        ServicePort.protocol ServiceProxyOptions.path ServiceSpec.clusterIP
        ServiceSpec.externalName ServiceSpec.externalTrafficPolicy ServiceSpec.healthCheckNodePort
        ServiceSpec.loadBalancerIP ServiceSpec.publishNotReadyAddresses
        ServiceSpec.sessionAffinity ServiceSpec.type StorageOSPersistentVolumeSource.fsType
        StorageOSPersistentVolumeSource.readOnly StorageOSPersistentVolumeSource.volumeName
        StorageOSPersistentVolumeSource.volumeNamespace StorageOSVolumeSource.fsType
        StorageOSVolumeSource.readOnly StorageOSVolumeSource.volumeName
        StorageOSVolumeSource.volumeNamespace TCPSocketAction.host Taint.value Toleration.effect
        Toleration.key Toleration.operator Toleration.value VolumeHealthCondition.message
        VolumeMount.readOnly VolumeMount.subPath VolumeMount.subPathExpr
        VolumeMountStatus.readOnly VsphereVirtualDiskVolumeSource.fsType
        VsphereVirtualDiskVolumeSource.storagePolicyID
        VsphereVirtualDiskVolumeSource.storagePolicyName
    """,
    "k8s.io.api.events.v1": """
        Event.action Event.deprecatedCount Event.note Event.reason Event.reportingController
        Event.reportingInstance Event.type
    """,
    "k8s.io.api.events.v1beta1": """
        Event.action Event.deprecatedCount Event.note Event.reason Event.reportingController
        Event.reportingInstance Event.type
    """,
    "k8s.io.api.extensions.v1beta1": """
        DaemonSetCondition.message DaemonSetCondition.reason DaemonSetSpec.minReadySeconds
        DaemonSetSpec.templateGeneration DaemonSetStatus.numberAvailable
        DaemonSetStatus.numberUnavailable DaemonSetStatus.observedGeneration
        DaemonSetStatus.updatedNumberScheduled DaemonSetUpdateStrategy.type
        DeploymentCondition.message DeploymentCondition.reason DeploymentSpec.minReadySeconds
        DeploymentSpec.paused DeploymentStatus.availableReplicas
        DeploymentStatus.observedGeneration DeploymentStatus.readyReplicas
        DeploymentStatus.replicas DeploymentStatus.unavailableReplicas
        DeploymentStatus.updatedReplicas DeploymentStrategy.type HTTPIngressPath.path
        IngressBackend.serviceName IngressLoadBalancerIngress.hostname
        IngressLoadBalancerIngress.ip IngressRule.host IngressTLS.secretName
        ReplicaSetCondition.message ReplicaSetCondition.reason ReplicaSetSpec.minReadySeconds
        ReplicaSetStatus.availableReplicas ReplicaSetStatus.fullyLabeledReplicas
        ReplicaSetStatus.observedGeneration ReplicaSetStatus.readyReplicas RollbackConfig.revision
        ScaleSpec.replicas ScaleStatus.targetSelector
    """,
    "k8s.io.api.flowcontrol.v1": """
        FlowSchemaCondition.message FlowSchemaCondition.reason FlowSchemaCondition.status
        FlowSchemaCondition.type PriorityLevelConfigurationCondition.message
        PriorityLevelConfigurationCondition.reason PriorityLevelConfigurationCondition.status
        PriorityLevelConfigurationCondition.type ResourcePolicyRule.clusterScope
    """,
    "k8s.io.api.flowcontrol.v1beta1": """
        FlowSchemaCondition.message FlowSchemaCondition.reason FlowSchemaCondition.status
        FlowSchemaCondition.type PriorityLevelConfigurationCondition.message
        PriorityLevelConfigurationCondition.reason PriorityLevelConfigurationCondition.status
        PriorityLevelConfigurationCondition.type ResourcePolicyRule.clusterScope
    """,
    "k8s.io.api.flowcontrol.v1beta2": """
        FlowSchemaCondition.message FlowSchemaCondition.reason FlowSchemaCondition.status
        FlowSchemaCondition.type PriorityLevelConfigurationCondition.message
        PriorityLevelConfigurationCondition.reason PriorityLevelConfigurationCondition.status
        PriorityLevelConfigurationCondition.type ResourcePolicyRule.clusterScope
    """,
    "k8s.io.api.flowcontrol.v1beta3": """
        FlowSchemaCondition.message FlowSchemaCondition.reason FlowSchemaCondition.status
        FlowSchemaCondition.type PriorityLevelConfigurationCondition.message
        PriorityLevelConfigurationCondition.reason PriorityLevelConfigurationCondition.status
        PriorityLevelConfigurationCondition.type ResourcePolicyRule.clusterScope
    """,
    "k8s.io.api.imagepolicy.v1alpha1": """
        ImageReviewContainerSpec.image ImageReviewSpec.namespace ImageReviewStatus.reason
    """,
    "k8s.io.api.networking.v1": """
        HTTPIngressPath.path IngressClassSpec.controller IngressLoadBalancerIngress.hostname
        IngressLoadBalancerIngress.ip IngressRule.host IngressTLS.secretName ParentReference.group
        ParentReference.name ParentReference.namespace ParentReference.resource
        ServiceBackendPort.name ServiceBackendPort.number
    """,
    "k8s.io.api.networking.v1beta1": """
        HTTPIngressPath.path IngressBackend.serviceName IngressClassSpec.controller
        IngressLoadBalancerIngress.hostname IngressLoadBalancerIngress.ip IngressRule.host
        IngressTLS.secretName ParentReference.group ParentReference.name ParentReference.namespace
        ParentReference.resource
    """,
    "k8s.io.api.policy.v1": """
        PodDisruptionBudgetStatus.observedGeneration
    """,
    "k8s.io.api.policy.v1beta1": """
        PodDisruptionBudgetStatus.observedGeneration
    """,
    "k8s.io.api.rbac.v1": """
        Subject.apiGroup Subject.namespace
    """,
    "k8s.io.api.rbac.v1alpha1": """
        Subject.apiVersion Subject.namespace
    """,
    "k8s.io.api.rbac.v1beta1": """
        Subject.apiGroup Subject.namespace
    """,
    "k8s.io.api.resource.v1": """
        DeviceSubRequest.allocationMode DeviceSubRequest.count DeviceTaint.value
        DeviceToleration.effect DeviceToleration.key DeviceToleration.operator
        DeviceToleration.value ExactDeviceRequest.allocationMode ExactDeviceRequest.count
        NetworkDeviceData.hardwareAddress NetworkDeviceData.interfaceName
        ResourceClaimConsumerReference.apiGroup
    """,
    "k8s.io.api.resource.v1alpha3": """
        DeviceTaint.value PartitionTypeStatus.attribute PartitionTypeStatus.type PoolStatus.driver
        PoolStatus.poolName ShareableCapacityStatus.name
    """,
    "k8s.io.api.resource.v1beta1": """
        DeviceRequest.allocationMode DeviceRequest.count DeviceSubRequest.allocationMode
        DeviceSubRequest.count DeviceTaint.value DeviceToleration.effect DeviceToleration.key
        DeviceToleration.operator DeviceToleration.value NetworkDeviceData.hardwareAddress
        NetworkDeviceData.interfaceName ResourceClaimConsumerReference.apiGroup
        ResourceSliceSpec.allNodes ResourceSliceSpec.nodeName
    """,
    "k8s.io.api.resource.v1beta2": """
        DeviceSubRequest.allocationMode DeviceSubRequest.count DeviceTaint.value
        DeviceToleration.effect DeviceToleration.key DeviceToleration.operator
        DeviceToleration.value ExactDeviceRequest.allocationMode ExactDeviceRequest.count
        NetworkDeviceData.hardwareAddress NetworkDeviceData.interfaceName
        ResourceClaimConsumerReference.apiGroup
    """,
    "k8s.io.api.scheduling.v1": """
        PriorityClass.description PriorityClass.globalDefault
    """,
    "k8s.io.api.scheduling.v1alpha3": """
        CompositePodGroupSpec.priorityClassName CompositePodGroupTemplate.priorityClassName
        PodGroupSpec.priorityClassName PodGroupTemplate.priorityClassName
        TypedLocalObjectReference.apiGroup
    """,
    "k8s.io.api.scheduling.v1beta1": """
        CompositePodGroupTemplate.priorityClassName PodGroupSpec.priorityClassName
        PodGroupTemplate.priorityClassName PriorityClass.description PriorityClass.globalDefault
        TypedLocalObjectReference.apiGroup
    """,
    "k8s.io.api.storage.v1": """
        StorageHealthCondition.message VolumeError.message
    """,
    "k8s.io.api.storage.v1alpha1": """
        VolumeError.message
    """,
    "k8s.io.api.storage.v1beta1": """
        StorageHealthCondition.message VolumeError.message
    """,
    "k8s.io.api.storagemigration.v1": """
        StorageVersionMigrationStatus.resourceVersion
    """,
    "k8s.io.api.storagemigration.v1beta1": """
        StorageVersionMigrationStatus.resourceVersion
    """,
    "k8s.io.apimachinery.pkg.apis.meta.v1": """
        APIResource.group APIResource.storageVersionHash APIResource.version
        Condition.observedGeneration CreateOptions.fieldManager CreateOptions.fieldValidation
        GetOptions.resourceVersion ListMeta.continue ListMeta.resourceVersion ListMeta.selfLink
        ListOptions.allowWatchBookmarks ListOptions.continue ListOptions.fieldSelector
        ListOptions.labelSelector ListOptions.limit ListOptions.resourceVersion
        ListOptions.resourceVersionMatch ListOptions.shardSelector ListOptions.watch
        ManagedFieldsEntry.apiVersion ManagedFieldsEntry.fieldsType ManagedFieldsEntry.manager
        ManagedFieldsEntry.operation ManagedFieldsEntry.subresource ObjectMeta.generateName
        ObjectMeta.generation ObjectMeta.name ObjectMeta.namespace ObjectMeta.resourceVersion
        ObjectMeta.selfLink ObjectMeta.uid PatchOptions.fieldManager PatchOptions.fieldValidation
        Status.code Status.message Status.reason Status.status StatusCause.field
        StatusCause.message StatusCause.reason StatusDetails.group StatusDetails.kind
        StatusDetails.name StatusDetails.retryAfterSeconds StatusDetails.uid
        TableOptions.includeObject TypeMeta.apiVersion TypeMeta.kind UpdateOptions.fieldManager
        UpdateOptions.fieldValidation
    """,
    "k8s.io.apimachinery.pkg.runtime": """
        TypeMeta.apiVersion TypeMeta.kind
    """,
}

if __name__ == "__main__":
    main()

"""Structural schemas of custom resources: pruning, defaulting, lookups and CRD checks.

What kube-apiserver (apiextensions-apiserver) does with a CustomResourceDefinition's
``openAPIV3Schema`` besides type checking (:func:`kubetrio.api.validation.schema_errors`):

- :func:`prune` drops every field the schema does not name, at any depth, except under
  ``x-kubernetes-preserve-unknown-fields: true``; at the root and in
  ``x-kubernetes-embedded-resource`` objects ``apiVersion``, ``kind`` and ``metadata`` are
  kept, and the root's ``metadata`` is cut to ``ObjectMeta``. It returns the dropped paths
  (``spec.x``, ``spec.items[0].y``), which ``fieldValidation=Strict`` refuses and ``Warn``
  reports as ``unknown field "spec.x"``.
- :func:`default` fills in ``default:`` values where a field is absent (or null and not
  nullable), at any depth, before validation; :func:`drop_nulls` then removes the nulls
  left where the schema allows none.
- :func:`schema_for_path` finds the schema of a field (``x-kubernetes-list-type`` and
  ``x-kubernetes-list-map-keys`` for server-side apply's merge of lists).
- :func:`crd_errors` checks a CRD is servable: names, versions, one storage version and
  structural schemas (every field typed, ``metadata`` at the root only naming ``name`` /
  ``generateName``, ``properties`` and ``additionalProperties`` not both, defaults that
  pass their own schema) — 422 naming the field, as upstream.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .generated import meta_v1
from .validation import (
    FieldError,
    schema_errors,
    validate_dns1035_label,
    validate_dns1123_subdomain,
)

__all__ = [
    "OBJECT_META_FIELDS",
    "crd_errors",
    "default",
    "drop_nulls",
    "has_defaults",
    "kube_version_key",
    "prune",
    "schema_for_path",
]

Schema = Mapping[str, Any]

OBJECT_META_FIELDS: frozenset[str] = frozenset(meta_v1.ObjectMeta.__struct_encode_fields__)
"""The keys of ``metadata`` a custom resource keeps (ObjectMeta's JSON names)."""

_RESOURCE_FIELDS = ("apiVersion", "kind", "metadata")


def prune(obj: dict[str, Any], schema: Schema | None) -> list[str]:
    """Drop the fields of a custom resource ``obj`` its ``schema`` does not name.

    In place; returns the paths dropped, in the order met. ``metadata`` keeps only
    ObjectMeta's fields (reported too).
    """
    pruned: list[str] = []
    metadata = obj.get("metadata")
    if isinstance(metadata, dict):
        for key in [k for k in metadata if k not in OBJECT_META_FIELDS]:
            del metadata[key]
            pruned.append(f"metadata.{key}")
    _prune(obj, schema, "", pruned, root=True)
    return pruned


def _prune(value: Any, schema: Schema | None, path: str, pruned: list[str], *, root: bool) -> None:
    preserve = schema is not None and bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    if isinstance(value, dict):
        if schema is None:
            return  # reached only under preserve-unknown-fields: keep as is
        properties: Mapping[str, Any] = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        embedded = root or bool(schema.get("x-kubernetes-embedded-resource"))
        for key in list(value):
            child = f"{path}.{key}" if path else key
            if embedded and key in _RESOURCE_FIELDS and key not in properties:
                if key == "metadata" and not root and isinstance(value[key], dict):
                    for meta_key in [k for k in value[key] if k not in OBJECT_META_FIELDS]:
                        del value[key][meta_key]
                        pruned.append(f"{child}.{meta_key}")
                continue
            if key in properties:
                _prune(value[key], properties[key], child, pruned, root=False)
            elif isinstance(extra, Mapping):
                _prune(value[key], extra, child, pruned, root=False)
            elif extra is True or preserve:
                _prune(value[key], None, child, pruned, root=False)
            else:
                del value[key]
                pruned.append(child)
    elif isinstance(value, list) and schema is not None:
        items = schema.get("items")
        if isinstance(items, Mapping):
            for index, item in enumerate(value):
                _prune(item, items, f"{path}[{index}]", pruned, root=False)


def default(value: Any, schema: Schema | None) -> None:
    """Fill in the schema's ``default`` values, in place, at every depth (upstream's
    ``structuraldefaulting.Default``): absent fields, and nulls that may not be null."""
    if schema is None:
        return
    if isinstance(value, dict):
        properties: Mapping[str, Any] = schema.get("properties") or {}
        for key, prop in properties.items():
            if "default" not in prop:
                continue
            if key not in value or _non_nullable_null(value[key], prop):
                value[key] = copy.deepcopy(prop["default"])
        extra = schema.get("additionalProperties")
        for key in list(value):
            if key in properties:
                default(value[key], properties[key])
            elif isinstance(extra, Mapping):
                if "default" in extra and _non_nullable_null(value[key], extra):
                    value[key] = copy.deepcopy(extra["default"])
                default(value[key], extra)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            for index, item in enumerate(value):
                if "default" in items and _non_nullable_null(item, items):
                    value[index] = copy.deepcopy(items["default"])
                default(value[index], items)


def drop_nulls(value: Any, schema: Schema | None) -> None:
    """Remove ``null`` fields the schema neither allows (``nullable``) nor defaults, in
    place — after :func:`default`, as upstream (``PruneNonNullableNullsWithoutDefaults``):
    a null where an object is expected means "not set", not an error."""
    if schema is None:
        return
    if isinstance(value, dict):
        properties: Mapping[str, Any] = schema.get("properties") or {}
        for key in list(value):
            prop = properties.get(key)
            if prop is None:
                continue
            if value[key] is None and "default" not in prop and not prop.get("nullable"):
                del value[key]
            else:
                drop_nulls(value[key], prop)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for item in value:
            drop_nulls(item, schema["items"])


def has_defaults(schema: Any) -> bool:
    """Whether a schema holds a ``default`` anywhere below its root."""
    if isinstance(schema, Mapping):
        return any(
            key == "default" or has_defaults(value)
            for key, value in schema.items()
            if key not in ("enum", "example")
        )
    if isinstance(schema, list):
        return any(has_defaults(item) for item in schema)
    return False


def _non_nullable_null(value: Any, schema: Schema) -> bool:
    return value is None and not schema.get("nullable")


def schema_for_path(schema: Schema | None, path: Sequence[str | int]) -> Schema | None:
    """The sub-schema of the field at ``path`` (keys, and ints for list items).

    ``schema_for_path(s, ["spec", "ports"])`` gives the schema of ``spec.ports`` with its
    ``x-kubernetes-list-type`` / ``x-kubernetes-list-map-keys``; an int step goes into
    ``items``. None when the schema does not say (preserved unknown fields, no schema).
    """
    node: Schema | None = schema
    for step in path:
        if node is None:
            return None
        if isinstance(step, int):
            items = node.get("items")
            node = items if isinstance(items, Mapping) else None
            continue
        properties = node.get("properties") or {}
        extra = node.get("additionalProperties")
        if step in properties:
            node = properties[step]
        elif isinstance(extra, Mapping):
            node = extra
        else:
            return None
    return node


# --- version priority ----------------------------------------------------------------

_KUBE_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def kube_version_key(version: str) -> tuple[int, int, int, str]:
    """Sort key giving Kubernetes' version priority, highest first when sorted ascending:
    GA before beta before alpha, larger numbers first, non-Kubernetes names last by name
    (apimachinery's ``CompareKubeAwareVersionStrings``)."""
    found = _KUBE_VERSION.match(version)
    if not found:
        return (3, 0, 0, version)
    major, stage, minor = found.group(1), found.group(2), found.group(3)
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -int(major), -int(minor or 0), "")


# --- CRD validation ------------------------------------------------------------------

_SCOPES = ("Namespaced", "Cluster")
_TYPES = ("object", "array", "string", "integer", "number", "boolean")
_LIST_TYPES = ("atomic", "set", "map")


def crd_errors(crd: Mapping[str, Any]) -> list[FieldError]:
    """Why a CustomResourceDefinition cannot be served (empty when it can)."""
    errors: list[FieldError] = []
    spec = crd.get("spec")
    if not isinstance(spec, Mapping):
        return [FieldError.required("spec")]
    group = spec.get("group")
    raw_names = spec.get("names")
    names: Mapping[str, Any] = raw_names if isinstance(raw_names, Mapping) else {}
    if not group:
        errors.append(FieldError.required("spec.group"))
    elif isinstance(group, str):
        errors += validate_dns1123_subdomain(group, "spec.group")
        if "." not in group:
            errors.append(
                FieldError.invalid("spec.group", group, "should be a domain with at least one dot")
            )
    for key in ("plural", "kind"):
        if not names.get(key):
            errors.append(FieldError.required(f"spec.names.{key}"))
    plural = names.get("plural")
    for key in ("plural", "singular"):
        value = names.get(key)
        if isinstance(value, str) and value:
            errors += validate_dns1035_label(value, f"spec.names.{key}")
    errors += _crd_kind_names(names)
    for key in ("shortNames", "categories"):
        for index, value in enumerate(names.get(key) or []):
            if isinstance(value, str):
                errors += validate_dns1035_label(value, f"spec.names.{key}[{index}]")
    name = (crd.get("metadata") or {}).get("name")
    if plural and group and name != f"{plural}.{group}":
        errors.append(
            FieldError.invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group')
        )
    if spec.get("preserveUnknownFields"):
        errors.append(
            FieldError.invalid(
                "spec.preserveUnknownFields",
                True,
                "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in "
                "spec.versions[*].schema instead",
            )
        )
    scope = spec.get("scope")
    if scope not in _SCOPES:
        errors.append(
            FieldError.required("spec.scope")
            if not scope
            else FieldError.not_supported("spec.scope", scope, _SCOPES)
        )
    versions = spec.get("versions")
    if not isinstance(versions, list) or not versions:
        errors.append(
            FieldError.required(
                "spec.versions", "must have exactly one version marked as storage version"
            )
        )
        return errors
    storage = 0
    seen: set[str] = set()
    unique = True
    for index, version in enumerate(versions):
        field = f"spec.versions[{index}]"
        if not isinstance(version, Mapping):
            errors.append(FieldError.invalid(field, version, "must be an object"))
            continue
        vname = version.get("name")
        if not vname:
            errors.append(FieldError.required(f"{field}.name"))
        elif isinstance(vname, str):
            errors += validate_dns1035_label(vname, f"{field}.name")
            if vname in seen:
                errors.append(FieldError.duplicate(f"{field}.name", vname))
                unique = False
            seen.add(vname)
        if version.get("storage"):
            storage += 1
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if schema is None:
            errors.append(
                FieldError.required(f"{field}.schema.openAPIV3Schema", "schemas are required")
            )
        else:
            errors += _structural_errors(schema, f"{field}.schema.openAPIV3Schema", root=True)
        scale = (version.get("subresources") or {}).get("scale")
        if isinstance(scale, Mapping):
            for key in ("specReplicasPath", "statusReplicasPath"):
                path = scale.get(key)
                if not path:
                    errors.append(FieldError.required(f"{field}.subresources.scale.{key}"))
                elif not str(path).startswith(".spec." if key.startswith("spec") else ".status."):
                    errors.append(
                        FieldError.invalid(
                            f"{field}.subresources.scale.{key}",
                            path,
                            f"should be a json path under .{key[: -len('ReplicasPath')]}",
                        )
                    )
        for cindex, column in enumerate(version.get("additionalPrinterColumns") or []):
            cfield = f"{field}.additionalPrinterColumns[{cindex}]"
            for key in ("name", "type", "jsonPath"):
                if not (column or {}).get(key):
                    errors.append(FieldError.required(f"{cfield}.{key}"))
            ctype = (column or {}).get("type")
            if ctype and ctype not in ("integer", "number", "string", "boolean", "date"):
                errors.append(
                    FieldError.not_supported(
                        f"{cfield}.type", ctype, ("boolean", "date", "integer", "number", "string")
                    )
                )
    if not unique:
        errors.append(
            FieldError.invalid("spec.versions", versions, "must contain unique version names")
        )
    if storage != 1:
        errors.append(
            FieldError.invalid(
                "spec.versions",
                versions if storage else None,
                "must have exactly one version marked as storage version",
            )
        )
    return errors + _conversion_errors(spec.get("conversion"))


def _crd_kind_names(names: Mapping[str, Any]) -> list[FieldError]:
    """``kind`` and ``listKind``: DNS-1035 labels but for case, and not the same."""
    errors: list[FieldError] = []
    for key in ("kind", "listKind"):
        value = names.get(key)
        if isinstance(value, str) and value:
            for problem in validate_dns1035_label(value.lower(), f"spec.names.{key}"):
                errors.append(
                    FieldError.invalid(
                        problem.field,
                        value,
                        "may have mixed case, but should otherwise match: " + problem.detail,
                    )
                )
    kind = names.get("kind")
    if kind and kind == names.get("listKind"):
        errors.append(
            FieldError.invalid("spec.names.listKind", kind, "kind and listKind may not be the same")
        )
    return errors


def _conversion_errors(conversion: Any) -> list[FieldError]:
    """``spec.conversion``: strategy None or Webhook; a webhook's client config and review
    versions only (and always) with Webhook."""
    if not isinstance(conversion, Mapping):
        return []
    path = "spec.conversion"
    strategy = conversion.get("strategy")
    if not strategy:
        return [FieldError.required(f"{path}.strategy")]
    if strategy not in ("None", "Webhook"):
        return [FieldError.not_supported(f"{path}.strategy", strategy, ("None", "Webhook"))]
    webhook = conversion.get("webhook")
    webhook = webhook if isinstance(webhook, Mapping) else {}
    if strategy == "None":
        if conversion.get("webhook") is not None:
            return [
                FieldError.forbidden(
                    f"{path}.webhook", "should not be set when strategy is not set to Webhook"
                )
            ]
        return []
    config = webhook.get("clientConfig")
    if not isinstance(config, Mapping):
        return [
            FieldError.required(
                f"{path}.webhook.clientConfig", "required when strategy is set to Webhook"
            )
        ]
    errors: list[FieldError] = []
    if (config.get("url") is None) == (config.get("service") is None):
        errors.append(
            FieldError.required(
                f"{path}.webhook.clientConfig", "exactly one of url or service is required"
            )
        )
    if not webhook.get("conversionReviewVersions"):
        errors.append(FieldError.required(f"{path}.webhook.conversionReviewVersions"))
    return errors


def _structural_errors(schema: Any, field: str, *, root: bool = False) -> list[FieldError]:
    """Where ``schema`` is not structural (upstream's ``ValidateStructural``, in part)."""
    if not isinstance(schema, Mapping):
        return [FieldError.invalid(field, schema, "must be an object")]
    errors: list[FieldError] = []
    stype = schema.get("type")
    int_or_string = bool(schema.get("x-kubernetes-int-or-string"))
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    if stype is None:
        if not int_or_string and not preserve:
            errors.append(
                FieldError.required(
                    f"{field}.type", "must not be empty for specified object fields"
                )
            )
    elif stype not in _TYPES:
        errors.append(FieldError.not_supported(f"{field}.type", stype, _TYPES))
    if root and stype not in (None, "object"):
        errors.append(FieldError.invalid(f"{field}.type", stype, "must be object at the root"))
    properties = schema.get("properties")
    extra = schema.get("additionalProperties")
    if properties is not None and extra not in (None, False):
        errors.append(
            FieldError.forbidden(
                f"{field}.additionalProperties",
                "additionalProperties and properties are mutual exclusive",
            )
        )
    if extra is False:
        errors.append(FieldError.forbidden(f"{field}.additionalProperties", "must not be false"))
    if properties is not None and stype not in (None, "object"):
        errors.append(
            FieldError.invalid(f"{field}.type", stype, "must be object when properties are given")
        )
    if isinstance(properties, Mapping):
        for key, sub in properties.items():
            sub_field = f"{field}.properties[{key}]"
            errors += _structural_errors(sub, sub_field)
            if root and key == "metadata" and isinstance(sub, Mapping):
                for meta_key in sub.get("properties") or {}:
                    if meta_key not in ("name", "generateName"):
                        errors.append(
                            FieldError.forbidden(
                                f"{sub_field}.properties[{meta_key}]",
                                "only name and generateName may be specified for metadata",
                            )
                        )
                if "default" in sub:
                    errors.append(
                        FieldError.forbidden(f"{sub_field}.default", "must not be set for metadata")
                    )
    elif properties is not None:
        errors.append(FieldError.invalid(f"{field}.properties", properties, "must be an object"))
    if isinstance(extra, Mapping):
        errors += _structural_errors(extra, f"{field}.additionalProperties")
    items = schema.get("items")
    if stype == "array" and items is None:
        errors.append(FieldError.required(f"{field}.items", "must be specified"))
    if items is not None:
        errors += _structural_errors(items, f"{field}.items")
    list_type = schema.get("x-kubernetes-list-type")
    if list_type is not None:
        if list_type not in _LIST_TYPES:
            errors.append(
                FieldError.not_supported(f"{field}.x-kubernetes-list-type", list_type, _LIST_TYPES)
            )
        elif list_type == "map" and not schema.get("x-kubernetes-list-map-keys"):
            errors.append(
                FieldError.required(
                    f"{field}.x-kubernetes-list-map-keys",
                    "must not be empty if x-kubernetes-list-type is map",
                )
            )
    if "default" in schema and not root:
        value = copy.deepcopy(schema["default"])
        errors += schema_errors(value, schema, f"{field}.default")
    return errors

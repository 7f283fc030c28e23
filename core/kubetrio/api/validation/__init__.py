"""Validation helpers whose errors become a Kubernetes ``Status`` 422 ``Invalid``.

Each check returns a list of :class:`FieldError` (empty when the value is fine),
carrying the field path (``metadata.name``, ``metadata.labels[app.kubernetes.io/name]``),
the bad value and a detail in the apiserver's wording. A caller collects them and
builds the response with :func:`invalid_status`, which shapes ``details.causes[]``
exactly as kubectl prints them::

    The Pod "Foo" is invalid: metadata.name: Invalid value: "Foo": a lowercase RFC 1123
    subdomain must consist of ...

:func:`decode_error_field_errors` does the same for a msgspec decoding error
(a missing required field, a wrong type), so body problems answer with paths too.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from ..generated import meta_v1

__all__ = [
    "NAME_VALIDATORS",
    "FieldError",
    "FieldErrorType",
    "InvalidError",
    "decode_error_field_errors",
    "error_path",
    "invalid_status",
    "validate_annotations",
    "validate_dns1035_label",
    "validate_dns1123_label",
    "validate_dns1123_subdomain",
    "validate_label_value",
    "validate_labels",
    "validate_object_meta",
    "validate_qualified_name",
]


class FieldErrorType(enum.StrEnum):
    """``StatusCause.reason`` values (Go's ``field.ErrorType``)."""

    NOT_FOUND = "FieldValueNotFound"
    REQUIRED = "FieldValueRequired"
    DUPLICATE = "FieldValueDuplicate"
    INVALID = "FieldValueInvalid"
    NOT_SUPPORTED = "FieldValueNotSupported"
    FORBIDDEN = "FieldValueForbidden"
    TOO_LONG = "FieldValueTooLong"
    TOO_MANY = "FieldValueTooMany"
    INTERNAL = "InternalError"
    TYPE_INVALID = "FieldValueTypeInvalid"


_TITLES = {
    FieldErrorType.NOT_FOUND: "Not found",
    FieldErrorType.REQUIRED: "Required value",
    FieldErrorType.DUPLICATE: "Duplicate value",
    FieldErrorType.INVALID: "Invalid value",
    FieldErrorType.NOT_SUPPORTED: "Unsupported value",
    FieldErrorType.FORBIDDEN: "Forbidden",
    FieldErrorType.TOO_LONG: "Too long",
    FieldErrorType.TOO_MANY: "Too many",
    FieldErrorType.INTERNAL: "Internal error",
    FieldErrorType.TYPE_INVALID: "Invalid value",
}

_NO_VALUE = object()


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field: ``type``, ``field`` path, ``bad_value``, ``detail``."""

    type: FieldErrorType
    field: str
    bad_value: Any = _NO_VALUE
    detail: str = ""

    @property
    def message(self) -> str:
        """The cause message without the path: ``Invalid value: "Foo": detail``."""
        parts = [_TITLES[self.type]]
        if self.bad_value is not _NO_VALUE and self.type not in (
            FieldErrorType.REQUIRED,
            FieldErrorType.FORBIDDEN,
            FieldErrorType.INTERNAL,
            FieldErrorType.TOO_LONG,
        ):
            parts.append(_go_value(self.bad_value))
        if self.detail:
            parts.append(self.detail)
        return ": ".join(parts)

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message

    def to_cause(self) -> meta_v1.StatusCause:
        """The ``details.causes[]`` entry."""
        return meta_v1.StatusCause(reason=str(self.type), message=self.message, field=self.field)

    @classmethod
    def required(cls, field: str, detail: str = "") -> FieldError:
        """A required value is missing."""
        return cls(FieldErrorType.REQUIRED, field, detail=detail)

    @classmethod
    def invalid(cls, field: str, value: Any, detail: str) -> FieldError:
        """A value is malformed."""
        return cls(FieldErrorType.INVALID, field, value, detail)

    @classmethod
    def type_invalid(cls, field: str, value: Any, detail: str) -> FieldError:
        """A value of the wrong type."""
        return cls(FieldErrorType.TYPE_INVALID, field, value, detail)

    @classmethod
    def forbidden(cls, field: str, detail: str) -> FieldError:
        """A value may not be set (here, or by this user)."""
        return cls(FieldErrorType.FORBIDDEN, field, detail=detail)

    @classmethod
    def not_supported(cls, field: str, value: Any, valid: Iterable[str]) -> FieldError:
        """A value outside an enumeration."""
        options = ", ".join(f'"{v}"' for v in valid)
        return cls(FieldErrorType.NOT_SUPPORTED, field, value, f"supported values: {options}")

    @classmethod
    def duplicate(cls, field: str, value: Any) -> FieldError:
        """A value that must be unique is repeated."""
        return cls(FieldErrorType.DUPLICATE, field, value)


def _go_value(value: Any) -> str:
    if isinstance(value, str):
        return msgspec.json.encode(value).decode()
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return str(value)
    return msgspec.json.encode(value).decode() if isinstance(value, list | dict) else str(value)


class InvalidError(ValueError):
    """Raised with the field errors of an object; :meth:`status` gives the 422 body."""

    def __init__(self, kind: str, name: str, errors: Sequence[FieldError], group: str = "") -> None:
        self.kind, self.name, self.group, self.errors = kind, name, group, list(errors)
        super().__init__(invalid_status(kind, name, errors, group).message)

    def status(self) -> meta_v1.Status:
        """The ``Status`` to answer with."""
        return invalid_status(self.kind, self.name, self.errors, self.group)


def invalid_status(
    kind: str, name: str, errors: Sequence[FieldError], group: str = ""
) -> meta_v1.Status:
    """A 422 ``Invalid`` Status naming each field, as the apiserver builds it."""
    qualified = f"{kind}.{group}" if group else kind
    joined = ", ".join(str(e) for e in errors)
    detail = joined if len(errors) == 1 else f"[{joined}]"
    return meta_v1.Status(
        kind="Status",
        api_version="v1",
        metadata=meta_v1.ListMeta(),
        status="Failure",
        message=f'{qualified} "{name}" is invalid: {detail}',
        reason="Invalid",
        details=meta_v1.StatusDetails(
            name=name,
            group=group or None,
            kind=kind,
            causes=[e.to_cause() for e in errors],
        ),
        code=422,
    )


# ---- decoding errors -----------------------------------------------------------------

_PATH_RE = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING_RE = re.compile(r"Object missing required field `(?P<field>[^`]+)`")


def error_path(exc: msgspec.ValidationError) -> tuple[str, str]:
    """Split msgspec's message into (Kubernetes field path, message).

    ``Expected `int`, got `str` - at `$.spec.replicas``` -> ``("spec.replicas",
    "Expected `int`, got `str`")``.
    """
    m = _PATH_RE.match(str(exc))
    assert m is not None
    path = (m.group("path") or "").lstrip(".")
    return path, m.group("msg")


def decode_error_field_errors(exc: msgspec.ValidationError) -> list[FieldError]:
    """A msgspec validation error as field errors (missing field -> Required)."""
    path, msg = error_path(exc)
    missing = _MISSING_RE.match(msg)
    if missing:
        field = f"{path}.{missing.group('field')}" if path else missing.group("field")
        return [FieldError.required(field)]
    return [FieldError(FieldErrorType.TYPE_INVALID, path, detail=msg)]


# ---- names, labels, annotations -------------------------------------------------------

_DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = _DNS1123_LABEL + r"(\." + _DNS1123_LABEL + ")*"
_DNS1035_LABEL = "[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = "(" + _QUALIFIED_NAME + ")?"

_DNS1123_LABEL_RE = re.compile(_DNS1123_LABEL)
_DNS1123_SUBDOMAIN_RE = re.compile(_DNS1123_SUBDOMAIN)
_DNS1035_LABEL_RE = re.compile(_DNS1035_LABEL)
_QUALIFIED_NAME_RE = re.compile(_QUALIFIED_NAME)
_LABEL_VALUE_RE = re.compile(_LABEL_VALUE)


def _regex_detail(what: str, regex: str, *examples: str) -> str:
    shown = ",  or ".join(f"'{e}'" for e in examples)
    return f"{what} (e.g. {shown}, regex used for validation is '{regex}')"


_DNS1123_LABEL_MSG = _regex_detail(
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character",
    _DNS1123_LABEL,
    "my-name",
    "123-abc",
)
_DNS1123_SUBDOMAIN_MSG = _regex_detail(
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character",
    _DNS1123_SUBDOMAIN,
    "example.com",
)
_DNS1035_LABEL_MSG = _regex_detail(
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with "
    "an alphabetic character, and end with an alphanumeric character",
    _DNS1035_LABEL,
    "my-name",
    "abc-123",
)
_QUALIFIED_NAME_MSG = _regex_detail(
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
    "end with an alphanumeric character",
    _QUALIFIED_NAME,
    "MyName",
    "my.name",
    "123-abc",
)
_LABEL_VALUE_MSG = _regex_detail(
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
    "or '.', and must start and end with an alphanumeric character",
    _LABEL_VALUE,
    "MyValue",
    "my_value",
    "12345",
)


def _max_len(n: int) -> str:
    return f"must be no more than {n} characters"


def validate_dns1123_label(value: str, field: str) -> list[FieldError]:
    """A DNS-1123 label (namespace names): ``[a-z0-9]([-a-z0-9]*[a-z0-9])?``, <= 63."""
    errs = []
    if len(value) > 63:
        errs.append(FieldError.invalid(field, value, _max_len(63)))
    if not _DNS1123_LABEL_RE.fullmatch(value):
        errs.append(FieldError.invalid(field, value, _DNS1123_LABEL_MSG))
    return errs


def validate_dns1123_subdomain(value: str, field: str) -> list[FieldError]:
    """A DNS-1123 subdomain (most object names): dot-separated labels, <= 253."""
    errs = []
    if len(value) > 253:
        errs.append(FieldError.invalid(field, value, _max_len(253)))
    if not _DNS1123_SUBDOMAIN_RE.fullmatch(value):
        errs.append(FieldError.invalid(field, value, _DNS1123_SUBDOMAIN_MSG))
    return errs


def validate_dns1035_label(value: str, field: str) -> list[FieldError]:
    """A DNS-1035 label (service names): starts with a letter, <= 63."""
    errs = []
    if len(value) > 63:
        errs.append(FieldError.invalid(field, value, _max_len(63)))
    if not _DNS1035_LABEL_RE.fullmatch(value):
        errs.append(FieldError.invalid(field, value, _DNS1035_LABEL_MSG))
    return errs


def qualified_name_problems(value: str) -> list[str]:
    """Why ``value`` is not a qualified name (``[dns-subdomain/]name``); [] if it is."""
    problems: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            problems.append("prefix part must be non-empty")
        else:
            if len(prefix) > 253:
                problems.append("prefix part " + _max_len(253))
            if not _DNS1123_SUBDOMAIN_RE.fullmatch(prefix):
                problems.append("prefix part " + _DNS1123_SUBDOMAIN_MSG)
    else:
        return [
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and "
            "must start and end with an alphanumeric character, with an optional DNS "
            "subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        problems.append("name part must be non-empty")
    else:
        if len(name) > 63:
            problems.append("name part " + _max_len(63))
        if not _QUALIFIED_NAME_RE.fullmatch(name):
            problems.append(_QUALIFIED_NAME_MSG)
    return problems


def label_value_problems(value: str) -> list[str]:
    """Why ``value`` is not a label value (empty is fine); [] if it is."""
    problems: list[str] = []
    if len(value) > 63:
        problems.append(_max_len(63))
    if not _LABEL_VALUE_RE.fullmatch(value):
        problems.append(_LABEL_VALUE_MSG)
    return problems


def validate_qualified_name(value: str, field: str) -> list[FieldError]:
    """A label key, annotation key or finalizer: ``[prefix/]name``."""
    return [FieldError.invalid(field, value, p) for p in qualified_name_problems(value)]


def validate_label_value(value: str, field: str) -> list[FieldError]:
    """A label value: empty, or <= 63 alphanumerics with ``-_.`` inside."""
    return [FieldError.invalid(field, value, p) for p in label_value_problems(value)]


def validate_labels(labels: Mapping[str, str] | None, field: str) -> list[FieldError]:
    """Every key and value of ``metadata.labels`` (paths ``labels[key]`` for values)."""
    errs: list[FieldError] = []
    for key, value in (labels or {}).items():
        errs += validate_qualified_name(key, field)
        if not isinstance(value, str):
            errs.append(FieldError.invalid(f"{field}[{key}]", value, "must be a string"))
            continue
        errs += validate_label_value(value, f"{field}[{key}]")
    return errs


_ANNOTATIONS_MAX_BYTES = 256 * 1024


def validate_annotations(annotations: Mapping[str, str] | None, field: str) -> list[FieldError]:
    """Annotation keys are qualified names (case-insensitively); total size <= 256 KiB."""
    errs: list[FieldError] = []
    total = 0
    for key, value in (annotations or {}).items():
        errs += validate_qualified_name(key.lower(), field)
        total += len(key) + len(value if isinstance(value, str) else "")
    if total > _ANNOTATIONS_MAX_BYTES:
        errs.append(
            FieldError(
                FieldErrorType.TOO_LONG,
                field,
                detail=f"may not be more than {_ANNOTATIONS_MAX_BYTES} bytes",
            )
        )
    return errs


_META_SHAPES: Mapping[str, type | tuple[type, ...]] = {
    "name": str,
    "generateName": str,
    "namespace": str,
    "labels": Mapping,
    "annotations": Mapping,
    "finalizers": list,
    "ownerReferences": list,
}
_SHAPE_NAMES: Mapping[type | tuple[type, ...], str] = {
    str: "must be a string",
    Mapping: "must be an object",
    list: "must be a list",
}

NameValidator = Callable[[str, str], list[FieldError]]

NAME_VALIDATORS: Mapping[tuple[str, str], NameValidator] = {
    ("", "namespaces"): validate_dns1123_label,
    ("", "services"): validate_dns1035_label,
}
"""Resources whose names are not DNS-1123 subdomains (the default)."""


def validate_object_meta(
    meta: meta_v1.ObjectMeta | Mapping[str, Any] | None,
    *,
    namespaced: bool,
    name_validator: NameValidator = validate_dns1123_subdomain,
    field: str = "metadata",
) -> list[FieldError]:
    """The checks every object's metadata gets on create and update.

    name (or generateName) is required and must pass ``name_validator``; namespace is
    required exactly when ``namespaced``; labels, annotations, finalizers and
    ownerReferences must be well formed.
    """
    m: dict[str, Any]
    if meta is None:
        m = {}
    elif isinstance(meta, meta_v1.ObjectMeta):
        m = msgspec.to_builtins(meta, enc_hook=str)
    else:
        m = dict(meta)
    errs: list[FieldError] = []
    # Shapes first: a hand-made body can hold anything, and the checks below need
    # strings, maps and lists where Kubernetes has them.
    for key, want in _META_SHAPES.items():
        value = m.get(key)
        if value is not None and not isinstance(value, want):
            errs.append(FieldError.invalid(f"{field}.{key}", value, _SHAPE_NAMES[want]))
            m.pop(key)
    for key in ("labels", "annotations"):
        for k, v in (m.get(key) or {}).items():
            if not isinstance(v, str):
                errs.append(FieldError.invalid(f"{field}.{key}[{k}]", v, "must be a string"))
    if errs:
        return errs
    name, generate = m.get("name"), m.get("generateName")
    if not name and not generate:
        errs.append(FieldError.required(f"{field}.name", "name or generateName is required"))
    if name:
        errs += name_validator(name, f"{field}.name")
    if generate and not name:
        # a prefix may end in '-': validate it as if it did not
        errs += name_validator(generate.rstrip("-") or generate, f"{field}.generateName")
    ns = m.get("namespace")
    if namespaced:
        if not ns:
            errs.append(FieldError.required(f"{field}.namespace"))
        else:
            errs += validate_dns1123_label(ns, f"{field}.namespace")
    elif ns:
        errs.append(FieldError.forbidden(f"{field}.namespace", "not allowed on this type"))
    errs += validate_labels(m.get("labels"), f"{field}.labels")
    errs += validate_annotations(m.get("annotations"), f"{field}.annotations")
    for i, fin in enumerate(m.get("finalizers") or []):
        if not isinstance(fin, str):
            errs.append(FieldError.invalid(f"{field}.finalizers[{i}]", fin, "must be a string"))
            continue
        errs += validate_qualified_name(fin, f"{field}.finalizers[{i}]")
    controllers = 0
    for i, ref in enumerate(m.get("ownerReferences") or []):
        path = f"{field}.ownerReferences[{i}]"
        if not isinstance(ref, Mapping):
            errs.append(FieldError.invalid(path, ref, "must be an object"))
            continue
        for key in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(key):
                errs.append(FieldError.required(f"{path}.{key}"))
        if ref.get("controller"):
            controllers += 1
    if controllers > 1:
        errs.append(
            FieldError.invalid(
                f"{field}.ownerReferences",
                m.get("ownerReferences"),
                f"Only one reference can have Controller set to true. Found {controllers}",
            )
        )
    return errs


_SCHEMA_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def schema_errors(value: Any, schema: Mapping[str, Any], field: str = "") -> list[FieldError]:
    """Where ``value`` breaks an OpenAPI v3 (structural) ``schema``: types, ``enum``,
    ``required``, bounds (``minimum``, ``maxLength``, ``pattern``, ``maxItems``,
    ``uniqueItems``, ``x-kubernetes-list-type: set/map`` ...), recursing through
    ``properties``, ``items`` and ``additionalProperties``.

    What kube-apiserver checks of a custom resource before it stores it (``field`` is the
    path so far, as in ``spec.blockSize``). Fields the schema does not name are left to
    the caller; ``x-kubernetes-int-or-string`` accepts either.
    """
    if value is None:
        if schema.get("nullable") or not field:
            return []
        return [FieldError.invalid(field, None, "must not be null")]
    expected = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if isinstance(value, bool) or not isinstance(value, int | str):
            return [FieldError.type_invalid(field, value, "must be integer or string")]
        return []
    allowed = _SCHEMA_TYPES.get(expected) if isinstance(expected, str) else None
    # bool is an int in Python, JSON keeps them apart.
    if allowed is not None and (
        not isinstance(value, allowed) or (isinstance(value, bool) and expected != "boolean")
    ):
        return [FieldError.type_invalid(field, value, f"must be of type {expected}")]
    if "enum" in schema and value not in schema["enum"]:
        return [FieldError.not_supported(field, value, [str(v) for v in schema["enum"]])]
    errors: list[FieldError] = _constraint_errors(value, schema, field)
    prefix = f"{field}." if field else ""
    if isinstance(value, dict) and schema.get("x-kubernetes-embedded-resource"):
        errors += _embedded_resource_errors(value, prefix)
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for name in schema.get("required") or ():
            if name not in value:
                errors.append(FieldError.required(f"{prefix}{name}"))
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                errors += schema_errors(item, properties[key], f"{prefix}{key}")
            elif isinstance(extra, Mapping):
                errors += schema_errors(item, extra, f"{prefix}{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{field}[{index}]")
    return errors


def _embedded_resource_errors(value: Mapping[str, Any], prefix: str) -> list[FieldError]:
    """An embedded resource names its ``apiVersion`` and ``kind``, as upstream requires."""
    errors: list[FieldError] = []
    for key in ("apiVersion", "kind"):
        if key not in value:
            errors.append(FieldError.required(f"{prefix}{key}", "must not be empty"))
        elif not isinstance(value[key], str):
            errors.append(FieldError.type_invalid(f"{prefix}{key}", value[key], "must be a string"))
        elif not value[key]:
            errors.append(FieldError.invalid(f"{prefix}{key}", value[key], "must not be empty"))
    return errors


def _go_number(value: float) -> str:
    """A bound as Go's ``%v`` prints a float64 (``1``, not ``1.0``)."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _size_errors(
    field: str, count: int, schema: Mapping[str, Any], bound: str, noun: str
) -> list[FieldError]:
    """``max<bound>``/``min<bound>`` of a list or map, in kube-openapi's words (its
    too-many message says "items" for both)."""
    errors: list[FieldError] = []
    most, least = schema.get(f"max{bound}"), schema.get(f"min{bound}")
    if isinstance(most, int) and count > most:
        errors.append(
            FieldError(FieldErrorType.TOO_MANY, field, count, f"must have at most {most} items")
        )
    if isinstance(least, int) and count < least:
        detail = f"should have at least {least} {noun}"
        errors.append(FieldError.invalid(field, count, _in_body(field, detail)))
    return errors


def _in_body(field: str, detail: str) -> str:
    return f"{field or 'body'} in body {detail}"


def _constraint_errors(value: Any, schema: Mapping[str, Any], field: str) -> list[FieldError]:
    """Bounds of numbers, strings, arrays and objects, in kube-openapi's wording."""
    errors: list[FieldError] = []
    if isinstance(value, int | float) and not isinstance(value, bool):
        maximum, minimum = schema.get("maximum"), schema.get("minimum")
        if isinstance(maximum, int | float):
            if schema.get("exclusiveMaximum") and value >= maximum:
                detail = f"should be less than {_go_number(maximum)}"
                errors.append(FieldError.invalid(field, value, _in_body(field, detail)))
            elif value > maximum:
                detail = f"should be less than or equal to {_go_number(maximum)}"
                errors.append(FieldError.invalid(field, value, _in_body(field, detail)))
        if isinstance(minimum, int | float):
            if schema.get("exclusiveMinimum") and value <= minimum:
                detail = f"should be greater than {_go_number(minimum)}"
                errors.append(FieldError.invalid(field, value, _in_body(field, detail)))
            elif value < minimum:
                detail = f"should be greater than or equal to {_go_number(minimum)}"
                errors.append(FieldError.invalid(field, value, _in_body(field, detail)))
        step = schema.get("multipleOf")
        if isinstance(step, int | float) and step > 0 and (value / step) % 1:
            detail = f"should be a multiple of {_go_number(step)}"
            errors.append(FieldError.invalid(field, value, _in_body(field, detail)))
    elif isinstance(value, str):
        longest, shortest = schema.get("maxLength"), schema.get("minLength")
        if isinstance(longest, int) and len(value) > longest:
            errors.append(
                FieldError(
                    FieldErrorType.TOO_LONG, field, value, f"may not be more than {longest} bytes"
                )
            )
        if isinstance(shortest, int) and len(value) < shortest:
            detail = f"should be at least {shortest} chars long"
            errors.append(FieldError.invalid(field, value, _in_body(field, detail)))
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            try:
                matched = re.search(pattern, value) is not None
            except re.error:
                matched = True  # an expression Python cannot read: not ours to refuse
            if not matched:
                detail = f"should match '{pattern}'"
                errors.append(FieldError.invalid(field, value, _in_body(field, detail)))
    elif isinstance(value, list):
        errors += _size_errors(field, len(value), schema, "Items", "items")
        list_type = schema.get("x-kubernetes-list-type")
        if schema.get("uniqueItems") or list_type == "set":
            seen: list[Any] = []
            for index, item in enumerate(value):
                if item in seen:
                    errors.append(FieldError.duplicate(f"{field}[{index}]", item))
                seen.append(item)
        elif list_type == "map":
            keys = schema.get("x-kubernetes-list-map-keys") or []
            seen_keys: list[tuple[Any, ...]] = []
            for index, item in enumerate(value):
                if not isinstance(item, Mapping):
                    continue
                key = tuple(item.get(k) for k in keys)
                if key in seen_keys:
                    shown = {k: item.get(k) for k in keys}
                    errors.append(FieldError.duplicate(f"{field}[{index}]", shown))
                seen_keys.append(key)
    elif isinstance(value, dict):
        errors += _size_errors(field, len(value), schema, "Properties", "properties")
    return errors

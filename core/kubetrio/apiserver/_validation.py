"""Turning request bodies into checked objects, or into clear 400/415/422 answers.

Every body goes through three gates before it reaches the registry:

1. **decoding** by content type (JSON, YAML for apply patches; protobuf from kubectl
   1.32+) — malformed input is 400 BadRequest, never a 500;
2. **typing** against the resource's generated model — a wrong type is 400 with the
   field path; unknown fields follow ``fieldValidation`` (Strict: 400, Warn: a
   ``Warning`` header, Ignore: dropped silently) and are never stored;
3. **validation** of names and required fields — 422 Invalid with
   ``details.causes[].field``.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import string
from typing import Any

import msgspec
import yaml

from kubetrio import api
from kubetrio.api import structural, validation
from kubetrio.api.generated import autoscaling_v1
from kubetrio.api.scheme import ResourceInfo
from kubetrio.api.validation import kinds
from kubetrio.handler import Request
from kubetrio.kubeobject import KubeObject

from . import _limits
from ._http import MAX_BODY_BYTES
from ._status import ApiError, bad_request, invalid

JSON = "application/json"
YAML = "application/yaml"
PROTOBUF = "application/vnd.kubernetes.protobuf"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

_PATH_SEGMENT_FORBIDDEN = ("/", "%")
CRDS = ("apiextensions.k8s.io", "customresourcedefinitions")

# RBAC objects may be named with any path segment (``system:controller:x``).
_PATH_SEGMENT_NAMED = {
    ("rbac.authorization.k8s.io", r)
    for r in ("roles", "clusterroles", "rolebindings", "clusterrolebindings")
}


def media_type(request: Request) -> str:
    """The request body's media type, without parameters."""
    return request.headers.get("content-type", JSON).split(";")[0].strip().lower() or JSON


_DECODED: contextvars.ContextVar[tuple[bytes, Any] | None] = contextvars.ContextVar(
    "decoded_body", default=None
)
"""A large body decoded ahead on a worker thread (:func:`predecode`): (body, value or
the ApiError decoding raised)."""


async def predecode(request: Request) -> None:
    """Decode a large body on a worker thread, for :func:`decode_body` to return later.

    Decoding a 3 MiB YAML body takes a second or more; on the loop it would stall every
    other request. Errors are kept for whoever asks for the body (a request that never
    reads its body never sees them).
    """
    body = request.body
    if len(body) < _limits.OFFLOAD_BYTES or request.method not in ("POST", "PUT", "PATCH"):
        return
    token = _limits.weigh(len(body))
    try:
        value: Any = await _limits.offload(_decode, request)
    except ApiError as exc:
        value = exc
    finally:
        _limits.WEIGHT.reset(token)
    _DECODED.set((body, value))


def forget_predecoded() -> None:
    """Drop what :func:`predecode` kept (the request is answered)."""
    _DECODED.set(None)


def decode_body(request: Request, *, expect: type = dict) -> Any:
    """Decode a request body by its content type; 400/413/415 on anything malformed,
    too large once expanded or nested too deeply."""
    ahead = _DECODED.get()
    if ahead is not None and ahead[0] is request.body:
        _DECODED.set(None)  # decoded once: a second reader gets its own copy
        value = ahead[1]
        if isinstance(value, ApiError):
            raise value
    else:
        value = _decode(request)
    if not isinstance(value, expect):
        wanted = "an object" if expect is dict else "a list"
        raise bad_request(f"the request body must be {wanted}, not {type(value).__name__}")
    return value


def _decode(request: Request) -> Any:
    kind = media_type(request)
    body = request.body
    if not body.strip():
        raise bad_request("the request body is empty")
    try:
        if kind in (JSON, MERGE_PATCH, JSON_PATCH, STRATEGIC_PATCH, "*/*"):
            value = msgspec.json.decode(body)
            _limits.check_body_depth(value, body)
        elif kind in (YAML, APPLY_PATCH, "application/yaml+json", "text/yaml"):
            value = _limits.load_yaml(body, max_json_bytes=MAX_BODY_BYTES)
        elif kind == PROTOBUF:
            from ._protobuf import decode_protobuf_body

            value = decode_protobuf_body(body)
            _limits.check_body_depth(value)
        else:
            raise ApiError(
                415,
                f"the body of the request was in an unknown format - accepted media types "
                f"include: {JSON}, {YAML}, {PROTOBUF}",
                reason="UnsupportedMediaType",
            )
    except ApiError:
        raise
    except (msgspec.DecodeError, yaml.YAMLError, UnicodeDecodeError, ValueError) as exc:
        raise bad_request(f"the request body is not valid {kind}: {exc}") from exc
    except RecursionError as exc:
        raise _limits.too_deep_error("the request body") from exc
    return value


def check_kind(
    obj: KubeObject, info: ResourceInfo, *, kind: str = "", api_version: str = ""
) -> None:
    """Fill in or check ``apiVersion`` and ``kind`` against the URL's resource."""
    kind = kind or info.kind
    api_version = api_version or info.api_version
    if "kind" in obj and obj["kind"] not in ("", kind):
        raise bad_request(
            f'the kind "{obj["kind"]}" in the body does not match the resource, which '
            f'serves kind "{kind}"'
        )
    if "apiVersion" in obj and obj["apiVersion"] not in ("", api_version):
        raise bad_request(
            f'the API version "{obj["apiVersion"]}" in the body does not match the '
            f'request\'s "{api_version}"'
        )
    obj["kind"] = kind
    obj["apiVersion"] = api_version


def typed(
    obj: KubeObject,
    info: ResourceInfo,
    field_validation: str,
    warnings: list[str],
    *,
    model: type | None = None,
    kind: str = "",
) -> KubeObject:
    """The object checked against the resource's model and re-encoded from it.

    Re-encoding drops unknown fields and normalises quantities, so what is stored is
    exactly what the model can say.
    """
    model = model or info.model
    kind = kind or info.kind
    if model is None and info.custom is not None:
        return _custom_typed(obj, info, field_validation, warnings)
    if model is None:
        if info.schema:  # a plugin's kind: its schema's types, as kube-apiserver checks
            errors = validation.schema_errors(obj, info.schema)
            if errors:
                raise _invalid(info, (obj.get("metadata") or {}).get("name", ""), errors)
        return obj
    try:
        checked: Any = api.from_builtins(obj, model)
    except (msgspec.ValidationError, ValueError, TypeError) as exc:
        raise bad_request(
            f'{kind} in version "{info.version}" cannot be handled as a {kind}: '
            f"{_with_field_path(str(exc))}"
        ) from exc
    bad_bytes = _base64_problem(obj, info)
    if bad_bytes:
        # Go decodes a []byte field from base64 while unmarshalling: a 400, not a 422.
        raise bad_request(
            f'{kind} in version "{info.version}" cannot be handled as a {kind}: {bad_bytes}'
        )
    unknown = api.unknown_fields(obj, model)
    if unknown:
        report_unknown_fields(unknown, _field_validation_mode(field_validation), warnings)
    result: KubeObject = api.to_builtins(checked)
    return result


def typed_scale(scale: KubeObject, info: ResourceInfo) -> None:
    """A Scale body checked against autoscaling/v1 ``Scale``: a replica count that is no
    int32 is a 400, as kube-apiserver's decoding answers."""
    typed(dict(scale), info, "Ignore", [], model=autoscaling_v1.Scale, kind="Scale")


FIELD_VALIDATION = ("", "Ignore", "Strict", "Warn")
"""The values ``fieldValidation`` may take (empty: Warn), as upstream, case and all."""
_OPTIONS_KINDS = {"create": "CreateOptions", "update": "UpdateOptions", "patch": "PatchOptions"}


def check_write_options(request: Request, verb: str) -> None:
    """Refuse a write whose ``fieldValidation`` is not one upstream knows, before its body
    is read: 422 Invalid on ``CreateOptions``/``UpdateOptions``/``PatchOptions``, as
    kube-apiserver's ``ValidateFieldValidation``."""
    kind = _OPTIONS_KINDS.get(verb)
    value = request.param("fieldValidation")
    if kind is None or value in FIELD_VALIDATION:
        return
    supported = ", ".join(f'"{v}"' for v in FIELD_VALIDATION)
    message = f'Unsupported value: "{value}": supported values: {supported}'
    cause = _cause("fieldValidation", message, "FieldValueNotSupported")
    raise invalid(kind, "meta.k8s.io", "", [cause])


# The maps of []byte values among the built-in kinds, sent as base64 strings in JSON.
_BYTES_MAPS = {("", "secrets"): "data", ("", "configmaps"): "binaryData"}
_BASE64 = frozenset(string.ascii_letters + string.digits + "+/")


def _base64_problem(obj: KubeObject, info: ResourceInfo) -> str:
    """Go's error for the first value of a []byte map that is not padded base64; "" if none."""
    field = _BYTES_MAPS.get((info.group, info.resource))
    values = obj.get(field) if field else None
    if not isinstance(values, dict):
        return ""
    for value in values.values():
        if not isinstance(value, str):
            continue
        try:
            base64.b64decode(value.replace("\r", "").replace("\n", ""), validate=True)
        except (binascii.Error, ValueError):
            bad = next(
                (i for i, c in enumerate(value) if c not in _BASE64 and c not in "=\r\n"), -1
            )
            if bad < 0:  # a wrong length or misplaced padding: the last quantum is corrupt
                bad = len(value) - len(value) % 4 if len(value) % 4 else value.find("=")
            return f"illegal base64 data at input byte {max(bad, 0)}"
    return ""


def _field_validation_mode(field_validation: str) -> str:
    mode = field_validation or "Warn"
    if mode not in FIELD_VALIDATION:
        raise bad_request(
            f'fieldValidation must be one of Strict, Warn or Ignore, not "{field_validation}"'
        )
    return mode


def report_unknown_fields(
    unknown: list[str], mode: str, warnings: list[str], *, prefix: str = ""
) -> None:
    """Unknown fields as ``fieldValidation`` asks: Strict refuses them (400 naming each),
    Warn adds a warning each, Ignore says nothing."""
    messages = [f'unknown field "{path}"' for path in unknown]
    if mode == "Strict":
        raise bad_request(prefix + "strict decoding error: " + ", ".join(messages))
    if mode == "Warn":
        warnings.extend(messages)


def _custom_typed(
    obj: KubeObject, info: ResourceInfo, field_validation: str, warnings: list[str]
) -> KubeObject:
    """A CRD-served object as apiextensions-apiserver decodes it: unknown fields pruned
    (Strict: 400 naming them, Warn: a warning each), then the schema's defaults, then
    its types, enums and required fields (422)."""
    mode = _field_validation_mode(field_validation)
    schema = info.schema or {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    unknown = structural.prune(obj, schema)
    if unknown:
        handled = f'{info.kind} in version "{info.version}" cannot be handled as a {info.kind}: '
        report_unknown_fields(unknown, mode, warnings, prefix=handled)
    structural.default(obj, schema)
    structural.drop_nulls(obj, schema)
    structural.prune(obj, schema)  # defaults may hold fields the schema does not name
    errors = validation.schema_errors(obj, schema)
    if errors:
        raise _invalid(info, (obj.get("metadata") or {}).get("name", ""), errors)
    return obj


def _with_field_path(message: str) -> str:
    """msgspec's ``- at `$.spec.x[0]``` → ``spec.x[0]: ...``."""
    text, sep, path = message.rpartition(" - at `")
    if not sep:
        return message
    field = path.rstrip("`").removeprefix("$").removeprefix(".")
    return f"{field}: {text}" if field else text


def validate_metadata(obj: KubeObject, info: ResourceInfo) -> None:
    """Names and metadata shapes (and a CRD's servability); 422 Invalid naming each
    field at fault."""
    metadata = obj.get("metadata")
    name = metadata.get("name", "") if isinstance(metadata, dict) else ""
    if not isinstance(metadata, dict):
        errors = [validation.FieldError.required("metadata")]
    else:
        errors = validation.validate_object_meta(
            metadata, namespaced=info.namespaced, name_validator=_name_validator(info)
        )
    if (info.group, info.resource) == CRDS:
        # A CRD that could not be served (no storage version, a non-structural schema)
        # is refused here rather than stored and silently ignored.
        errors += structural.crd_errors(obj)
    if errors:
        raise _invalid(info, name, errors)


def validate_kind(info: ResourceInfo, obj: KubeObject, old: KubeObject | None) -> None:
    """What upstream's per-kind validation refuses (a PodSpec without containers, a
    selector that does not match its template, ...); 422 Invalid naming each field."""
    if old is not None and _only_metadata_changed(obj, old):
        # Ratcheting, as upstream does for rules it tightens: an object stored before a
        # rule (or over a size limit) can still get its finalizers removed, its labels
        # changed, and so be deleted; its metadata is validated on its own.
        return
    errors = kinds.validate(info.group, info.resource, obj, old)
    if errors:
        name = (obj.get("metadata") or {}).get("name", "")
        raise _invalid(info, name, errors)


def _only_metadata_changed(obj: KubeObject, old: KubeObject) -> bool:
    keys = (obj.keys() | old.keys()) - {"metadata"}
    return all(obj.get(key) == old.get(key) for key in keys)


def _invalid(info: ResourceInfo, name: str, errors: list[validation.FieldError]) -> ApiError:
    """422 Invalid with a cause per field error."""
    causes = [{"reason": str(e.type), "message": e.message, "field": e.field} for e in errors]
    return invalid(info.kind, info.group, name, causes)


def _name_validator(info: ResourceInfo) -> validation.NameValidator:
    key = (info.group, info.resource)
    if key in _PATH_SEGMENT_NAMED:
        return _validate_path_segment
    return validation.NAME_VALIDATORS.get(key, validation.validate_dns1123_subdomain)


def _validate_path_segment(name: str, field: str) -> list[validation.FieldError]:
    if name in (".", "..") or any(c in name for c in _PATH_SEGMENT_FORBIDDEN):
        return [
            validation.FieldError.invalid(
                field, name, "may not be '.' or '..' and may not contain '/' or '%'"
            )
        ]
    return []


def _cause(field: str, message: str, reason: str = "FieldValueInvalid") -> dict[str, str]:
    return {"reason": reason, "message": message, "field": field}

"""Label and field selectors: parsing the query-string forms and matching objects.

Label selectors (``?labelSelector=``, ``kubectl -l``) follow the Kubernetes grammar::

    selector    := "" | requirement ("," requirement)*
    requirement := key | "!" key
                 | key ("=" | "==" | "!=") value
                 | key ("in" | "notin") "(" value ("," value)* ")"
                 | key (">" | "<") integer

``!=`` and ``notin`` also match objects without the label; ``>``/``<`` need the label
to hold an integer. A parsed :class:`Selector` prints canonically (requirements sorted
by key, set values sorted), which is the form the apiserver writes into
``Scale.status.selector``.

Field selectors (``?fieldSelector=``) are ``field(=|==|!=)value`` terms joined by
commas, with ``\\``, ``,`` and ``=`` escapable by a backslash inside values; a missing
field reads as the empty string. Which fields may be selected depends on the resource
(:data:`SELECTABLE_FIELDS`); :func:`object_fields` extracts them from an object.

Bad input raises :class:`LabelSelectorError` or :class:`FieldSelectorError`
(both ``ValueError``), carrying the offending ``position`` in the input string.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .generated import meta_v1
from .validation import label_value_problems, qualified_name_problems

__all__ = [
    "EVERYTHING",
    "NOTHING",
    "SELECTABLE_FIELDS",
    "FieldRequirement",
    "FieldSelector",
    "FieldSelectorError",
    "LabelSelectorError",
    "Operator",
    "Requirement",
    "Selector",
    "SelectorError",
    "label_selector_from_struct",
    "object_fields",
    "parse_field_selector",
    "parse_label_selector",
    "selector_from_set",
]


class SelectorError(ValueError):
    """A selector string or structure is invalid; ``position`` is where (or -1)."""

    def __init__(self, message: str, position: int = -1) -> None:
        self.position = position
        super().__init__(message if position < 0 else f"{message} (at position {position})")


class LabelSelectorError(SelectorError):
    """An invalid label selector."""


class FieldSelectorError(SelectorError):
    """An invalid field selector, or a field the resource does not support."""


class Operator(enum.StrEnum):
    """A label requirement's operator, spelled as in the selector string."""

    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    GREATER_THAN = "gt"
    LESS_THAN = "lt"


@dataclass(frozen=True, slots=True)
class Requirement:
    """One label requirement: ``key``, ``operator`` and its ``values``."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a label set satisfies this requirement."""
        op = self.operator
        if op in (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.IN):
            return self.key in labels and labels[self.key] in self.values
        if op in (Operator.NOT_EQUALS, Operator.NOT_IN):
            return self.key not in labels or labels[self.key] not in self.values
        if op is Operator.EXISTS:
            return self.key in labels
        if op is Operator.DOES_NOT_EXIST:
            return self.key not in labels
        # gt / lt: the label must hold an integer
        if self.key not in labels:
            return False
        try:
            have = int(labels[self.key])
        except ValueError:
            return False
        want = int(self.values[0])
        return have > want if op is Operator.GREATER_THAN else have < want

    def __str__(self) -> str:
        op = self.operator
        if op is Operator.EXISTS:
            return self.key
        if op is Operator.DOES_NOT_EXIST:
            return f"!{self.key}"
        if op in (Operator.IN, Operator.NOT_IN):
            return f"{self.key} {op.value} ({','.join(sorted(self.values))})"
        if op is Operator.GREATER_THAN:
            return f"{self.key}>{self.values[0]}"
        if op is Operator.LESS_THAN:
            return f"{self.key}<{self.values[0]}"
        return f"{self.key}{op.value}{self.values[0]}"


@dataclass(frozen=True, slots=True)
class Selector:
    """A label selector: all ``requirements`` must hold.

    An empty selector matches everything; :data:`NOTHING` (``match_nothing=True``,
    what a null ``LabelSelector`` means) matches nothing.
    """

    requirements: tuple[Requirement, ...] = ()
    match_nothing: bool = False

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """Whether an object with these labels (None for none) is selected."""
        if self.match_nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def is_empty(self) -> bool:
        """True if it selects everything."""
        return not self.requirements and not self.match_nothing

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


EVERYTHING = Selector()
"""Selects every object (the empty selector)."""
NOTHING = Selector(match_nothing=True)
"""Selects no object (a null ``LabelSelector``)."""


def _make_requirement(key: str, op: Operator, values: Iterable[str], position: int) -> Requirement:
    problems = qualified_name_problems(key)
    if problems:
        raise LabelSelectorError(f"invalid label key {key!r}: {'; '.join(problems)}", position)
    vals = tuple(values)
    if op in (Operator.IN, Operator.NOT_IN) and not vals:
        raise LabelSelectorError(
            f"for 'in', 'notin' operators, values set can't be empty (key {key!r})", position
        )
    if op in (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.NOT_EQUALS) and len(vals) != 1:
        raise LabelSelectorError(
            f"exact-match operators need exactly one value ({key!r})", position
        )
    if op in (Operator.EXISTS, Operator.DOES_NOT_EXIST) and vals:
        raise LabelSelectorError(
            f"values set must be empty for exists and does not exist ({key!r})", position
        )
    if op in (Operator.GREATER_THAN, Operator.LESS_THAN):
        if len(vals) != 1 or not re.fullmatch(r"-?[0-9]+", vals[0]):
            raise LabelSelectorError(
                f"for 'gt', 'lt' operators, exactly one integer value is required ({key!r})",
                position,
            )
        return Requirement(key, op, vals)
    for v in vals:
        problems = label_value_problems(v)
        if problems:
            raise LabelSelectorError(f"invalid label value {v!r}: {'; '.join(problems)}", position)
    if op in (Operator.IN, Operator.NOT_IN):
        vals = tuple(sorted(set(vals)))
    return Requirement(key, op, vals)


# ---- the label selector lexer and parser -------------------------------------------

_TOKEN_RE = re.compile(r"\s*(?:(!=|==|[!=(),<>])|([^\s!=(),<>]+))")


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, position) triples; kind is ``id``, an operator/punctuation, or ``end``."""
    out: list[tuple[str, str, int]] = []
    pos = 0
    # Every character is whitespace, punctuation or part of a word, so the pattern
    # only fails on trailing whitespace.
    while (m := _TOKEN_RE.match(text, pos)) is not None:
        if m.group(1):
            out.append((m.group(1), m.group(1), m.start(1)))
        else:
            word = m.group(2)
            out.append((word if word in ("in", "notin") else "id", word, m.start(2)))
        pos = m.end()
    out.append(("end", "", len(text)))
    return out


def parse_label_selector(text: str) -> Selector:
    """Parse a label selector string (``app=web,tier in (a,b),!canary``).

    The empty string (or only whitespace) selects everything.
    """
    toks = _tokens(text)
    i = 0
    reqs: list[Requirement] = []

    def describe(tok: tuple[str, str, int]) -> str:
        return "end of input" if tok[0] == "end" else repr(tok[1])

    while toks[i][0] != "end":
        kind, word, pos = toks[i]
        if kind == "!":
            i += 1
            kind, key, kpos = toks[i]
            if kind not in ("id", "in", "notin"):
                raise LabelSelectorError(
                    f"expected a label key after '!', found {describe(toks[i])}", kpos
                )
            reqs.append(_make_requirement(key, Operator.DOES_NOT_EXIST, (), kpos))
            i += 1
        elif kind in ("id", "in", "notin"):
            key, kpos = word, pos
            i += 1
            kind, word, pos = toks[i]
            if kind in (",", "end"):
                reqs.append(_make_requirement(key, Operator.EXISTS, (), kpos))
            elif kind in ("=", "==", "!="):
                i += 1
                vkind, value, vpos = toks[i]
                if vkind in (",", "end"):
                    value = ""
                elif vkind in ("id", "in", "notin"):
                    i += 1
                else:
                    raise LabelSelectorError(
                        f"expected a value after {word!r} for key {key!r}, found "
                        f"{describe(toks[i])}",
                        vpos,
                    )
                reqs.append(_make_requirement(key, Operator(kind), (value,), kpos))
            elif kind in ("in", "notin"):
                i += 1
                if toks[i][0] != "(":
                    raise LabelSelectorError(
                        f"expected '(' after {word!r} for key {key!r}, found {describe(toks[i])}",
                        toks[i][2],
                    )
                i += 1
                values: list[str] = []
                expect_value = True
                while True:
                    vkind, value, vpos = toks[i]
                    if vkind == ")":
                        if expect_value and values:
                            values.append("")
                        i += 1
                        break
                    if vkind == ",":
                        if expect_value:
                            values.append("")
                        expect_value = True
                    elif vkind in ("id", "in", "notin") and expect_value:
                        values.append(value)
                        expect_value = False
                    else:
                        raise LabelSelectorError(
                            f"expected a value, ',' or ')' in the set of key {key!r}, found "
                            f"{describe(toks[i])}",
                            vpos,
                        )
                    i += 1
                op = Operator.IN if kind == "in" else Operator.NOT_IN
                reqs.append(_make_requirement(key, op, values, kpos))
            elif kind in (">", "<"):
                i += 1
                vkind, value, vpos = toks[i]
                if vkind != "id":
                    raise LabelSelectorError(
                        f"expected an integer after {kind!r} for key {key!r}, found "
                        f"{describe(toks[i])}",
                        vpos,
                    )
                i += 1
                op = Operator.GREATER_THAN if kind == ">" else Operator.LESS_THAN
                reqs.append(_make_requirement(key, op, (value,), kpos))
            else:
                raise LabelSelectorError(
                    f"expected one of '=', '==', '!=', 'in', 'notin', '<', '>', ',' after key "
                    f"{key!r}, found {describe(toks[i])}",
                    pos,
                )
        else:
            raise LabelSelectorError(f"expected a label key, found {describe(toks[i])}", pos)
        if toks[i][0] == ",":
            i += 1
            if toks[i][0] == "end":
                raise LabelSelectorError("expected a requirement after ','", toks[i][2])
        elif toks[i][0] != "end":
            raise LabelSelectorError(
                f"expected ',' or end of input, found {describe(toks[i])}", toks[i][2]
            )
    reqs.sort(key=lambda r: r.key)
    return Selector(tuple(reqs))


def selector_from_set(labels: Mapping[str, str]) -> Selector:
    """The selector ``k1=v1,k2=v2`` for a label map (``matchLabels``, service selectors).

    An empty map selects everything.
    """
    return Selector(
        tuple(_make_requirement(k, Operator.EQUALS, (v,), -1) for k, v in sorted(labels.items()))
    )


_STRUCT_OPS = {
    "In": Operator.IN,
    "NotIn": Operator.NOT_IN,
    "Exists": Operator.EXISTS,
    "DoesNotExist": Operator.DOES_NOT_EXIST,
}


def label_selector_from_struct(
    selector: meta_v1.LabelSelector | Mapping[str, Any] | None,
) -> Selector:
    """Turn a ``LabelSelector`` (Struct or its JSON dict) into a :class:`Selector`.

    Null selects nothing; an empty selector (``{}``) selects everything, as in
    Kubernetes. Bad operators or values raise :class:`LabelSelectorError` naming the
    offending ``matchExpressions[i]``.
    """
    if selector is None:
        return NOTHING
    if isinstance(selector, meta_v1.LabelSelector):
        match_labels: Mapping[str, str] = selector.match_labels or {}
        exprs = [(e.key, e.operator, e.values or []) for e in selector.match_expressions or []]
    else:
        if not isinstance(selector, Mapping):
            raise LabelSelectorError("a label selector must be an object")
        match_labels = selector.get("matchLabels") or {}
        raw_exprs = selector.get("matchExpressions") or []
        if not isinstance(match_labels, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in match_labels.items()
        ):
            raise LabelSelectorError("matchLabels must map strings to strings")
        if not isinstance(raw_exprs, list) or not all(isinstance(e, Mapping) for e in raw_exprs):
            raise LabelSelectorError("matchExpressions must be a list of objects")
        exprs = [
            (e.get("key", ""), e.get("operator", ""), e.get("values") or []) for e in raw_exprs
        ]
        for i, (key, _, values) in enumerate(exprs):
            if (
                not isinstance(key, str)
                or not isinstance(values, list)
                or not all(isinstance(v, str) for v in values)
            ):
                raise LabelSelectorError(
                    f"matchExpressions[{i}]: key must be a string and values a list of strings"
                )
    reqs = [
        _make_requirement(k, Operator.EQUALS, (v,), -1) for k, v in sorted(match_labels.items())
    ]
    for i, (key, operator, values) in enumerate(exprs):
        op = _STRUCT_OPS.get(operator)
        if op is None:
            raise LabelSelectorError(
                f"matchExpressions[{i}].operator: {operator!r} is not a valid label selector "
                "operator (In, NotIn, Exists, DoesNotExist)"
            )
        try:
            reqs.append(_make_requirement(key, op, values, -1))
        except LabelSelectorError as e:
            raise LabelSelectorError(f"matchExpressions[{i}]: {e}") from None
    reqs.sort(key=lambda r: r.key)
    return Selector(tuple(reqs))


# ---- field selectors -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    """One field term: ``field`` ``operator`` (``=``, ``==`` or ``!=``) ``value``."""

    field: str
    operator: str
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        """Whether a flat field set satisfies the term (missing fields are ``""``)."""
        have = fields.get(self.field, "")
        return have != self.value if self.operator == "!=" else have == self.value

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")
        return f"{self.field}{self.operator}{escaped}"


@dataclass(frozen=True, slots=True)
class FieldSelector:
    """A field selector: every term must hold. Empty selects everything."""

    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, fields: Mapping[str, str]) -> bool:
        """Whether an object's selectable fields (see :func:`object_fields`) match."""
        return all(r.matches(fields) for r in self.requirements)

    def is_empty(self) -> bool:
        """True if it selects everything."""
        return not self.requirements

    def exact_value(self, field: str) -> str | None:
        """The value ``field`` must equal, if a term pins it (``metadata.name=x``).

        Lets a server turn a single-object watch into a key lookup.
        """
        for r in self.requirements:
            if r.field == field and r.operator in ("=", "=="):
                return r.value
        return None

    def check_supported(self, group: str, resource: str) -> None:
        """Raise :class:`FieldSelectorError` (``field label not supported: x``, the
        apiserver's 400 message) for a field the resource cannot select on."""
        allowed = SELECTABLE_FIELDS.get((group, resource), _COMMON_FIELDS)
        for r in self.requirements:
            if r.field not in allowed:
                raise FieldSelectorError(f"field label not supported: {r.field}")

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def parse_field_selector(text: str) -> FieldSelector:
    """Parse ``metadata.name=x,status.phase!=Running``; empty selects everything."""
    reqs: list[FieldRequirement] = []
    start = 0
    for term, term_pos in _split_unescaped(text, ","):
        start = term_pos
        if not term:
            continue
        field, op, raw, op_pos = _split_term(term)
        if op is None:
            raise FieldSelectorError(
                f"invalid field selector term {term!r}: expected field=value, field==value "
                "or field!=value",
                start,
            )
        if not field.strip():
            raise FieldSelectorError(f"invalid field selector term {term!r}: empty field", start)
        value = _unescape(raw, start + op_pos + len(op))
        reqs.append(FieldRequirement(field.strip(), op, value))
    return FieldSelector(tuple(reqs))


def _split_unescaped(text: str, sep: str) -> list[tuple[str, int]]:
    parts: list[tuple[str, int]] = []
    current: list[str] = []
    begin = 0
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if c == sep:
            parts.append(("".join(current), begin))
            current = []
            begin = i + 1
        else:
            current.append(c)
        i += 1
    parts.append(("".join(current), begin))
    return parts


def _split_term(term: str) -> tuple[str, str | None, str, int]:
    i = 0
    while i < len(term):
        if term[i] == "\\":
            i += 2
            continue
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op) :], i
        i += 1
    return term, None, "", -1


def _unescape(raw: str, position: int) -> str:
    out: list[str] = []
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == "\\":
            if i + 1 >= len(raw) or raw[i + 1] not in "\\,=":
                raise FieldSelectorError(
                    "invalid escape sequence in field selector value: only \\\\, \\, and \\= "
                    "may be escaped",
                    position + i,
                )
            out.append(raw[i + 1])
            i += 2
            continue
        if c in ",=":
            raise FieldSelectorError(f"invalid field selector value: unescaped {c!r}", position + i)
        out.append(c)
        i += 1
    return "".join(out)


# ---- selectable fields per resource ------------------------------------------------------

_COMMON_FIELDS = frozenset({"metadata.name", "metadata.namespace"})

SELECTABLE_FIELDS: Mapping[tuple[str, str], frozenset[str]] = {
    ("", "pods"): _COMMON_FIELDS
    | {
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    },
    ("", "events"): _COMMON_FIELDS
    | {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    },
    ("", "secrets"): _COMMON_FIELDS | {"type"},
    ("", "namespaces"): _COMMON_FIELDS | {"status.phase"},
    ("", "nodes"): _COMMON_FIELDS | {"spec.unschedulable"},
    ("", "replicationcontrollers"): _COMMON_FIELDS | {"status.replicas"},
    ("apps", "replicasets"): _COMMON_FIELDS | {"status.replicas"},
    ("batch", "jobs"): _COMMON_FIELDS | {"status.successful"},
}
"""Fields each resource can select on; every other resource has only the metadata ones."""

# Fields whose value is not simply the dotted path into the object.
_DERIVED: Mapping[str, str] = {"source": "source.component"}


def object_fields(group: str, resource: str, obj: Mapping[str, Any]) -> dict[str, str]:
    """The selectable fields of a JSON object as strings (``true``, ``3``, ``""``).

    ``obj`` is the object as plain JSON values (``to_builtins`` output).
    """
    allowed = SELECTABLE_FIELDS.get((group, resource), _COMMON_FIELDS)
    out: dict[str, str] = {}
    for name in allowed:
        node: Any = obj
        for part in _DERIVED.get(name, name).split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        out[name] = _field_string(node)
    if (group, resource) == ("", "pods") and not out.get("status.podIP"):
        status = obj.get("status")
        ips = status.get("podIPs") if isinstance(status, Mapping) else None
        if isinstance(ips, list) and ips and isinstance(ips[0], Mapping):
            out["status.podIP"] = _field_string(ips[0].get("ip"))
    return out


def _field_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

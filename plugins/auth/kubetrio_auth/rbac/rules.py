"""Policy rules: does a rule allow a request, and does one set of rules cover another.

The semantics are those of upstream's RBAC (``pkg/apis/rbac/v1/evaluation_helpers.go``
and ``pkg/registry/rbac/validation``): ``*`` matches any verb, API group, resource or
non-resource URL; a resource rule names ``resource`` or ``resource/subresource`` (or
``*/subresource`` for that subresource of anything); ``resourceNames`` limits a rule to
those objects; a non-resource URL ending in ``*`` matches every path it prefixes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from kubetrio.providers import AuthorizationAttributes

ALL = "*"

Rule = dict[str, Any]
"""A PolicyRule as decoded JSON (``verbs``, ``apiGroups``, ``resources``, …)."""


def _strings(rule: Rule, key: str) -> list[str]:
    return [str(v) for v in rule.get(key) or ()]


def verb_matches(rule: Rule, verb: str) -> bool:
    """The rule names the verb (or ``*``)."""
    verbs = _strings(rule, "verbs")
    return ALL in verbs or verb in verbs


def api_group_matches(rule: Rule, group: str) -> bool:
    """The rule names the API group (or ``*``)."""
    groups = _strings(rule, "apiGroups")
    return ALL in groups or group in groups


def resource_matches(rule: Rule, resource: str, subresource: str = "") -> bool:
    """The rule names ``resource[/subresource]``, ``*`` or ``*/subresource``."""
    combined = f"{resource}/{subresource}" if subresource else resource
    for ruled in _strings(rule, "resources"):
        if ruled in (ALL, combined):
            return True
        if subresource and ruled == f"*/{subresource}":
            return True
    return False


def resource_name_matches(rule: Rule, name: str) -> bool:
    """The rule has no ``resourceNames`` or names this object."""
    names = _strings(rule, "resourceNames")
    return not names or name in names


def non_resource_url_matches(rule: Rule, path: str) -> bool:
    """The rule names the path, ``*``, or a ``prefix*`` of it."""
    for url in _strings(rule, "nonResourceURLs"):
        if url in (ALL, path):
            return True
        if url.endswith(ALL) and path.startswith(url.rstrip(ALL)):
            return True
    return False


class CompiledRule:
    """A rule's lists as sets, to check a request without building lists per call."""

    __slots__ = ("groups", "names", "resources", "urls", "verbs")

    def __init__(self, rule: Rule) -> None:
        self.verbs = frozenset(str(v) for v in rule.get("verbs") or ())
        self.groups = frozenset(str(v) for v in rule.get("apiGroups") or ())
        self.resources = frozenset(str(v) for v in rule.get("resources") or ())
        self.names = frozenset(str(v) for v in rule.get("resourceNames") or ())
        self.urls = tuple(str(v) for v in rule.get("nonResourceURLs") or ())

    def allows(self, attributes: AuthorizationAttributes) -> bool:
        """Whether the rule allows the request described by ``attributes``."""
        if ALL not in self.verbs and attributes.verb not in self.verbs:
            return False
        if not attributes.is_resource_request:
            path = attributes.path
            return any(
                url in (ALL, path) or (url.endswith(ALL) and path.startswith(url.rstrip(ALL)))
                for url in self.urls
            )
        if ALL not in self.groups and attributes.api_group not in self.groups:
            return False
        resources = self.resources
        if ALL not in resources:
            if attributes.subresource:
                combined = f"{attributes.resource}/{attributes.subresource}"
                if combined not in resources and f"*/{attributes.subresource}" not in resources:
                    return False
            elif attributes.resource not in resources:
                return False
        return not self.names or attributes.name in self.names


def rule_allows(attributes: AuthorizationAttributes, rule: Rule) -> bool:
    """Whether ``rule`` allows the request described by ``attributes``."""
    return CompiledRule(rule).allows(attributes)


# --- coverage (escalation checks) ---------------------------------------------------------------


def _atoms(rule: Rule) -> Iterable[Rule]:
    """The rule split into one-verb, one-group, one-resource, one-name (or one-URL) rules,
    as upstream's ``BreakdownRule``."""
    verbs = _strings(rule, "verbs")
    if _strings(rule, "nonResourceURLs"):
        for verb in verbs:
            for url in _strings(rule, "nonResourceURLs"):
                yield {"verbs": [verb], "nonResourceURLs": [url]}
        return
    names = _strings(rule, "resourceNames") or [""]
    for group in _strings(rule, "apiGroups"):
        for resource in _strings(rule, "resources"):
            for verb in verbs:
                for name in names:
                    atom: Rule = {"verbs": [verb], "apiGroups": [group], "resources": [resource]}
                    if name:
                        atom["resourceNames"] = [name]
                    yield atom


def _has_all(held: Sequence[str], wanted: Sequence[str]) -> bool:
    return ALL in held or all(w in held for w in wanted)


def _resources_covered(held: Sequence[str], wanted: Sequence[str]) -> bool:
    if ALL in held:
        return True
    for resource in wanted:
        if resource in held:
            continue
        # "*/scale" covers "deployments/scale".
        _, slash, sub = resource.partition("/")
        if slash and f"*/{sub}" in held:
            continue
        return False
    return True


def _urls_covered(held: Sequence[str], wanted: Sequence[str]) -> bool:
    owner = {"nonResourceURLs": list(held)}
    return all(non_resource_url_matches(owner, url) for url in wanted)


def _rule_covers(owner: Rule, wanted: Rule) -> bool:
    if not _has_all(_strings(owner, "verbs"), _strings(wanted, "verbs")):
        return False
    if _strings(wanted, "nonResourceURLs"):
        return _urls_covered(
            _strings(owner, "nonResourceURLs"), _strings(wanted, "nonResourceURLs")
        )
    owner_names = _strings(owner, "resourceNames")
    wanted_names = _strings(wanted, "resourceNames")
    names_covered = not owner_names or bool(
        wanted_names and all(name in owner_names for name in wanted_names)
    )
    return (
        _has_all(_strings(owner, "apiGroups"), _strings(wanted, "apiGroups"))
        and _resources_covered(_strings(owner, "resources"), _strings(wanted, "resources"))
        and names_covered
    )


def uncovered(owned: Sequence[Rule], wanted: Sequence[Rule]) -> list[Rule]:
    """The pieces of ``wanted`` no rule of ``owned`` covers (empty: all covered), as
    upstream's ``validation.Covers``."""
    return [
        atom
        for rule in wanted
        for atom in _atoms(rule)
        if not any(_rule_covers(owner, atom) for owner in owned)
    ]


def compact(rules: Sequence[Rule]) -> list[Rule]:
    """``rules`` with the atoms that differ only in verb merged back (for messages)."""
    merged: dict[str, Rule] = {}
    for rule in rules:
        key = repr({k: v for k, v in sorted(rule.items()) if k != "verbs"})
        if key in merged:
            merged[key]["verbs"] = [*merged[key]["verbs"], *_strings(rule, "verbs")]
        else:
            merged[key] = {**rule, "verbs": _strings(rule, "verbs")}
    return list(merged.values())


def describe(rule: Rule) -> str:
    """A rule as upstream's ``CompactString`` prints it in escalation messages:
    ``{APIGroups:["apps"], Resources:["deployments"], Verbs:["get"]}``."""
    parts = []
    for key, label in (
        ("apiGroups", "APIGroups"),
        ("resources", "Resources"),
        ("nonResourceURLs", "NonResourceURLs"),
        ("resourceNames", "ResourceNames"),
        ("verbs", "Verbs"),
    ):
        values = _strings(rule, key)
        if values:
            parts.append(f"{label}:[{' '.join(_quote(v) for v in values)}]")
    return "{" + ", ".join(parts) + "}"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

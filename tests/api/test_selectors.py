"""Label and field selectors, with kubectl-style strings."""

import contextlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubetrio.api.generated import meta_v1
from kubetrio.api.selectors import (
    NOTHING,
    FieldSelectorError,
    LabelSelectorError,
    Operator,
    label_selector_from_struct,
    object_fields,
    parse_field_selector,
    parse_label_selector,
    selector_from_set,
)

WEB = {"app": "web", "tier": "frontend", "env": "prod", "replicas": "3"}


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("", True),
        ("   ", True),
        ("app=web", True),
        ("app==web", True),
        ("app = web", True),
        ("app!=web", False),
        ("app!=db", True),
        ("missing!=x", True),
        ("app=db", False),
        ("app", True),
        ("!app", False),
        ("!missing", True),
        ("missing", False),
        ("env in (prod, staging)", True),
        ("env in (staging)", False),
        ("env notin (prod)", False),
        ("missing notin (prod)", True),
        ("missing in (prod)", False),
        ("app=web,tier=frontend", True),
        ("app=web,tier=backend", False),
        ("app=web, env in (prod),!canary", True),
        ("replicas>2", True),
        ("replicas<2", False),
        ("app>2", False),
        ("missing=", False),
        ("app.kubernetes.io/name", False),
    ],
)
def test_label_matching(text: str, matches: bool) -> None:
    assert parse_label_selector(text).matches(WEB) is matches


def test_empty_value_matches_empty_label() -> None:
    assert parse_label_selector("x=").matches({"x": ""})
    assert parse_label_selector("x in (a,)").matches({"x": ""})


def test_canonical_string() -> None:
    sel = parse_label_selector("tier in (b, a),app=web,!canary,env")
    assert str(sel) == "app=web,!canary,env,tier in (a,b)"  # sorted by key, as Go does
    assert str(parse_label_selector(str(sel))) == str(sel)
    assert str(selector_from_set({"b": "2", "a": "1"})) == "a=1,b=2"


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("app in prod", 7, "expected '('"),
        ("app in ()", 0, "can't be empty"),
        ("app=web,", 8, "after ','"),
        ("app==", -1, None),
        ("=web", 0, "expected a label key"),
        ("app web", 4, "expected one of"),
        ("app in (a b)", 10, "in the set"),
        ("!", 1, "after '!'"),
        ("app=w@b", 0, "invalid label value"),
        ("Bad_Key_/x", 0, "invalid label key"),
        ("x>abc", 0, "integer"),
        ("a=b c", 4, "expected ','"),
    ],
)
def test_label_errors(text: str, position: int, fragment: str | None) -> None:
    if fragment is None:
        parse_label_selector(text)  # "app==" is valid: empty value
        return
    with pytest.raises(LabelSelectorError, match=re.escape(fragment)) as info:
        parse_label_selector(text)
    assert info.value.position == position
    assert isinstance(info.value, ValueError)


def test_struct_selectors() -> None:
    sel = meta_v1.LabelSelector(
        match_labels={"app": "web"},
        match_expressions=[
            meta_v1.LabelSelectorRequirement(key="env", operator="In", values=["prod", "qa"]),
            meta_v1.LabelSelectorRequirement(key="canary", operator="DoesNotExist"),
        ],
    )
    s = label_selector_from_struct(sel)
    assert s.matches(WEB)
    assert not s.matches({**WEB, "canary": "1"})
    assert str(s) == "app=web,!canary,env in (prod,qa)"
    as_dict = {
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "x", "operator": "Exists"}],
    }
    assert label_selector_from_struct(as_dict).requirements[1].operator is Operator.EXISTS
    assert label_selector_from_struct(None) is NOTHING
    assert not NOTHING.matches(WEB)
    assert label_selector_from_struct({}).matches({})


def test_struct_selector_errors() -> None:
    with pytest.raises(LabelSelectorError, match=r"matchExpressions\[0\].operator"):
        label_selector_from_struct({"matchExpressions": [{"key": "a", "operator": "Equals"}]})
    with pytest.raises(LabelSelectorError, match="can't be empty"):
        label_selector_from_struct({"matchExpressions": [{"key": "a", "operator": "In"}]})
    with pytest.raises(LabelSelectorError, match="must be empty"):
        label_selector_from_struct(
            {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}
        )


POD = {
    "metadata": {"name": "p1", "namespace": "default"},
    "spec": {"nodeName": "n1", "hostNetwork": True},
    "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}]},
}


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("", True),
        ("metadata.name=p1", True),
        ("metadata.name==p1", True),
        ("metadata.name!=p1", False),
        ("spec.nodeName=n1,status.phase!=Succeeded,status.phase!=Failed", True),
        ("status.phase=Pending", False),
        ("spec.hostNetwork=true", True),
        ("status.podIP=10.0.0.5", True),
        ("spec.schedulerName=", True),
        ("metadata.namespace=default,", True),
    ],
)
def test_field_matching(text: str, matches: bool) -> None:
    sel = parse_field_selector(text)
    sel.check_supported("", "pods")
    assert sel.matches(object_fields("", "pods", POD)) is matches


def test_field_selector_escapes_and_exact() -> None:
    sel = parse_field_selector(r"metadata.name=a\,b\=c\\d")
    assert sel.requirements[0].value == "a,b=c\\d"
    assert str(sel) == r"metadata.name=a\,b\=c\\d"
    assert parse_field_selector("metadata.name=x").exact_value("metadata.name") == "x"
    assert parse_field_selector("metadata.name!=x").exact_value("metadata.name") is None


def test_event_fields() -> None:
    ev = {
        "metadata": {"name": "e"},
        "involvedObject": {"name": "p1", "uid": "u"},
        "source": {"component": "kubelet"},
    }
    sel = parse_field_selector("involvedObject.name=p1,involvedObject.uid=u,source=kubelet")
    sel.check_supported("", "events")
    assert sel.matches(object_fields("", "events", ev))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("metadata.name", "expected field=value"),
        ("=x", "empty field"),
        ("a=b=c", "unescaped"),
        ("a=b\\x", "escape"),
    ],
)
def test_field_errors(text: str, fragment: str) -> None:
    with pytest.raises(FieldSelectorError, match=fragment):
        parse_field_selector(text)


def test_unsupported_field() -> None:
    with pytest.raises(FieldSelectorError, match=r"field label not supported: spec\.foo"):
        parse_field_selector("spec.foo=x").check_supported("", "pods")
    with pytest.raises(FieldSelectorError):
        parse_field_selector("status.phase=x").check_supported("apps", "deployments")


_label = st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,10}[a-z0-9])?", fullmatch=True)


@given(st.dictionaries(_label, _label, max_size=5), st.dictionaries(_label, _label, max_size=5))
def test_set_selector_round_trip(wanted: dict[str, str], labels: dict[str, str]) -> None:
    sel = selector_from_set(wanted)
    again = parse_label_selector(str(sel))
    assert again == sel
    assert sel.matches(labels) is all(labels.get(k) == v for k, v in wanted.items())


@given(st.text(max_size=30))
def test_parser_never_crashes(text: str) -> None:
    try:
        sel = parse_label_selector(text)
    except LabelSelectorError:
        return
    assert parse_label_selector(str(sel)) == sel


_any_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda c: (
        st.lists(c, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "matchLabels",
                    "matchExpressions",
                    "key",
                    "operator",
                    "values",
                    "a",
                    "status",
                    "podIPs",
                    "ip",
                    "spec",
                    "nodeName",
                    "metadata",
                    "name",
                ]
            ),
            c,
            max_size=4,
        )
    ),
    max_leaves=15,
)


@given(_any_json)
def test_struct_selector_rejects_junk_cleanly(data: object) -> None:
    with contextlib.suppress(LabelSelectorError):
        label_selector_from_struct(data)  # type: ignore[arg-type]


@given(st.dictionaries(st.sampled_from(["metadata", "spec", "status"]), _any_json))
def test_object_fields_tolerates_any_shape(obj: dict[str, object]) -> None:
    fields = object_fields("", "pods", obj)
    assert all(isinstance(v, str) for v in fields.values())


@given(st.text(max_size=40))
def test_field_parser_never_crashes(text: str) -> None:
    try:
        sel = parse_field_selector(text)
    except FieldSelectorError:
        return
    assert parse_field_selector(str(sel)) == sel

"""Every hook is documented by the template of kubetrio.hookspecs, and named consistently."""

from __future__ import annotations

import inspect

import pytest

from kubetrio import hookspecs

HOOKS = [
    (name, fn)
    for name, fn in vars(hookspecs).items()
    if inspect.isfunction(fn) and hasattr(fn, "kubetrio_spec")
]


def test_there_are_hooks_for_every_family() -> None:
    names = {name for name, _ in HOOKS}
    for family_hook in (
        "kubetrio_register_scheduler_plugins",
        "kubetrio_register_network_plugins",
        "kubetrio_register_storage_drivers",
        "kubetrio_authenticate",
        "kubetrio_authorize",
        "kubetrio_admission_mutate",
        "kubetrio_admission_validate",
        "kubetrio_register_resources",
        "kubetrio_register_controllers",
        "kubetrio_register_commands",
        "kubetrio_register_container_runtimes",
        "kubetrio_add_options",
    ):
        assert family_hook in names


def test_every_public_function_is_a_prefixed_hook() -> None:
    functions = [
        name
        for name, fn in vars(hookspecs).items()
        if inspect.isfunction(fn) and fn.__module__ == hookspecs.__name__
    ]
    assert functions == [name for name, _ in HOOKS]
    assert all(name.startswith("kubetrio_") for name in functions)


@pytest.mark.parametrize(("name", "fn"), HOOKS, ids=[name for name, _ in HOOKS])
def test_hook_follows_docstring_template(name: str, fn: object) -> None:
    doc = inspect.getdoc(fn)
    assert doc, f"{name} has no docstring"
    summary, _, body = doc.partition("\n")
    assert summary.endswith("."), f"{name}: summary line must be one sentence"
    for param in inspect.signature(fn).parameters:  # type: ignore[arg-type]
        assert f":param {param}:" in body, f"{name}: :param {param}: missing"
    assert ":returns:" in body, f"{name}: :returns: missing"
    firstresult = fn.kubetrio_spec["firstresult"]  # type: ignore[attr-defined]
    assert ("Stops at first non-None result" in body) == firstresult, (
        f"{name}: firstresult hooks (and only they) say 'Stops at first non-None result'"
    )


def test_hooks_are_synchronous() -> None:
    for name, fn in HOOKS:
        assert not inspect.iscoroutinefunction(fn), name


def test_hooks_are_declared_in_lifecycle_order() -> None:
    order = [name for name, _ in HOOKS]
    assert order[:2] == ["kubetrio_add_options", "kubetrio_configure"]
    assert order[-1] == "kubetrio_unconfigure"
    assert order.index("kubetrio_authenticate") < order.index("kubetrio_authorize")
    assert order.index("kubetrio_authorize") < order.index("kubetrio_admission_mutate")
    assert order.index("kubetrio_admission_mutate") < order.index("kubetrio_admission_validate")

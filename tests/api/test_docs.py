"""Every public name of kubetrio.api carries a docstring (the server builds on them)."""

import importlib
import inspect
import pkgutil

import kubetrio.api

MODULES = [
    importlib.import_module(f"kubetrio.api.{m.name}")
    for m in pkgutil.iter_modules(kubetrio.api.__path__)
    if not m.name.startswith("_") and m.name != "generated"
]


def test_modules_explain_themselves() -> None:
    for module in [kubetrio.api, *MODULES]:
        assert module.__doc__ and len(module.__doc__) > 40, module.__name__


def test_public_names_are_documented() -> None:
    missing = []
    for module in MODULES:
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isclass(obj) or inspect.isfunction(obj):
                if not inspect.getdoc(obj):
                    missing.append(f"{module.__name__}.{name}")
                if inspect.isclass(obj):
                    for attr, member in vars(obj).items():
                        if attr.startswith("_") or not inspect.isfunction(member):
                            continue
                        if not inspect.getdoc(member):
                            missing.append(f"{module.__name__}.{name}.{attr}")
    assert missing == []


def test_package_reexports_resolve() -> None:
    for name in dir(kubetrio.api):
        if not name.startswith("_"):
            assert getattr(kubetrio.api, name) is not None

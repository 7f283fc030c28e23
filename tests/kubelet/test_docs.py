"""Every module and public name of the node packages (kubelet, runtime, images) is documented."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

PACKAGES = ["kubetrio.kubelet", "kubetrio.runtime", "kubetrio.images"]


def modules() -> list[ModuleType]:
    found: list[ModuleType] = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        found.append(package)
        for info in pkgutil.iter_modules(package.__path__):
            found.append(importlib.import_module(f"{package_name}.{info.name}"))
    return found


@pytest.mark.parametrize("module", modules(), ids=lambda m: m.__name__)
def test_documented(module: ModuleType) -> None:
    assert module.__doc__ and len(module.__doc__) > 40
    missing = []
    name_of = module.__name__
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != name_of:
            continue
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_") or not inspect.isfunction(member):
                    continue
                if not inspect.getdoc(member):
                    missing.append(f"{name}.{attr}")
    assert missing == []

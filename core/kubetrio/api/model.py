"""The one configured base Struct of every Kubernetes model.

``KubeStruct`` fixes the wire conventions once:

- ``kw_only``: objects are built by field name; field order never matters.
- ``omit_defaults``: unset (``None``) fields are left out of the JSON, as Go's
  ``omitempty`` does, so encoded objects look like the apiserver's.
- ``rename="camel"``: Python attributes are snake_case; the JSON names are swagger's
  exact camelCase names. Names that camel-casing cannot reproduce (``podIPs``, ``$ref``,
  ``x-kubernetes-list-type``, Python keywords such as ``continue``) carry an explicit
  ``msgspec.field(name=...)`` in the generated code.
- ``repr_omit_defaults``: reprs show what is set, which is what one wants to read.

Unknown JSON fields are ignored when decoding (``fieldValidation=Ignore`` behaviour);
:func:`kubetrio.api.codec.unknown_fields` finds them for ``Strict``.

Integers swagger marks ``int32``/``int64`` are :data:`Int32`/:data:`Int64`: a value out
of range fails typing with the field's path (``replicas: 10000000000000`` is 400, as Go's
decoder refuses it), instead of being stored.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["Int32", "Int64", "KubeStruct"]

Int32 = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]
"""An integer of swagger format ``int32``."""
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
"""An integer of swagger format ``int64``."""


class KubeStruct(
    msgspec.Struct,
    kw_only=True,
    omit_defaults=True,
    rename="camel",
    repr_omit_defaults=True,
):
    """Base of all generated Kubernetes models."""

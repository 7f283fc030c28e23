"""kubetrio's API machinery: Kubernetes models, scheme, selectors, patches, validation.

This package imports nothing else of kubetrio. Its public surface:

- models: ``kubetrio.api.generated.<group>_<version>`` (``core_v1.Pod``, ``apps_v1.Deployment``,
  ``meta_v1.ObjectMeta`` ...), all subclasses of :class:`KubeStruct`;
- scalars: :class:`Quantity`, :class:`Time`, :class:`MicroTime`, ``IntOrString``;
- codec: :func:`encode`, :func:`decode`, :func:`to_builtins`, :func:`from_builtins`,
  :func:`unknown_fields`;
- scheme: :data:`BUILTIN` (a :class:`Scheme` of :class:`ResourceInfo`), :class:`GroupVersionKind`,
  :class:`GroupVersionResource` — discovery documents and kind/resource/type lookups;
- selectors: :func:`parse_label_selector`, :func:`label_selector_from_struct`,
  :func:`parse_field_selector`;
- patches: :func:`json_merge_patch`, :func:`json_patch`, :func:`strategic_merge_patch`;
- validation: :func:`validate_object_meta`, the DNS-1123 and label checks, :class:`FieldError`.
"""

from __future__ import annotations

from .codec import decode as decode
from .codec import encode as encode
from .codec import from_builtins as from_builtins
from .codec import to_builtins as to_builtins
from .codec import unknown_fields as unknown_fields
from .fieldmeta import FieldMeta as FieldMeta
from .intstr import IntOrString as IntOrString
from .intstr import scaled_value as scaled_value
from .model import KubeStruct as KubeStruct
from .quantity import Quantity as Quantity
from .quantity import QuantityFormat as QuantityFormat
from .quantity import QuantityParseError as QuantityParseError
from .scheme import BUILTIN as BUILTIN
from .scheme import GroupVersionKind as GroupVersionKind
from .scheme import GroupVersionResource as GroupVersionResource
from .scheme import ResourceInfo as ResourceInfo
from .scheme import Scheme as Scheme
from .scheme import SubresourceInfo as SubresourceInfo
from .scheme import api_version_of as api_version_of
from .scheme import split_api_version as split_api_version
from .timestamps import MicroTime as MicroTime
from .timestamps import Time as Time

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
- patches: :func:`json_merge_patch`, :func:`json_patch`, :func:`strategic_merge_patch`,
  :func:`apply_merge` (server-side apply without field ownership);
- field ownership: :mod:`kubetrio.api.managedfields` (``managedFields``, server-side apply
  with pruning and conflicts);
- validation: :func:`validate_object_meta`, the DNS-1123 and label checks, :class:`FieldError`;
- errors: :class:`StatusError` and the ``Status`` builders in :mod:`kubetrio.api.status`;
- views: :class:`ObjectHeader` / :func:`decode_header` for metadata-only decoding;
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
from .patch import JSONPatchError as JSONPatchError
from .patch import JSONPatchTestFailed as JSONPatchTestFailed
from .patch import PatchError as PatchError
from .patch import StrategicMergePatchError as StrategicMergePatchError
from .patch import apply_merge as apply_merge
from .patch import json_merge_patch as json_merge_patch
from .patch import json_patch as json_patch
from .patch import strategic_merge_patch as strategic_merge_patch
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
from .selectors import EVERYTHING as EVERYTHING
from .selectors import NOTHING as NOTHING
from .selectors import FieldSelector as FieldSelector
from .selectors import FieldSelectorError as FieldSelectorError
from .selectors import LabelSelectorError as LabelSelectorError
from .selectors import Selector as Selector
from .selectors import SelectorError as SelectorError
from .selectors import label_selector_from_struct as label_selector_from_struct
from .selectors import object_fields as object_fields
from .selectors import parse_field_selector as parse_field_selector
from .selectors import parse_label_selector as parse_label_selector
from .selectors import selector_from_set as selector_from_set
from .status import StatusError as StatusError
from .timestamps import MicroTime as MicroTime
from .timestamps import Time as Time
from .validation import FieldError as FieldError
from .validation import FieldErrorType as FieldErrorType
from .validation import InvalidError as InvalidError
from .validation import decode_error_field_errors as decode_error_field_errors
from .validation import invalid_status as invalid_status
from .validation import validate_dns1035_label as validate_dns1035_label
from .validation import validate_dns1123_label as validate_dns1123_label
from .validation import validate_dns1123_subdomain as validate_dns1123_subdomain
from .validation import validate_label_value as validate_label_value
from .validation import validate_labels as validate_labels
from .validation import validate_object_meta as validate_object_meta
from .validation import validate_qualified_name as validate_qualified_name
from .views import ObjectHeader as ObjectHeader
from .views import decode_header as decode_header

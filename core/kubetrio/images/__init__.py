"""OCI images on a node: references and mirrors, the distribution client, the store, builds.

* :class:`ImageReference`, :class:`RegistryConfig` — names and where registries are;
* :class:`RegistryClient` — the distribution API (pull, push, token and Basic auth);
* :class:`ImageStore` — content-addressed blobs, layers unpacked once in overlay form;
* :func:`build_image` — a busybox-based image from a directory, pushed to a registry
  (what ``kubetrio image build`` runs), or :func:`build_from_file` from a small
  Dockerfile-like file;
* :func:`import_image` — push an OCI layout or a docker-archive (``kubetrio image import``).
"""

from ._build import BuiltImage as BuiltImage
from ._build import build_from_file as build_from_file
from ._build import build_image as build_image
from ._build import make_layer as make_layer
from ._build import parse_buildfile as parse_buildfile
from ._build import push_image as push_image
from ._distribution import RegistryClient as RegistryClient
from ._distribution import RegistryError as RegistryError
from ._distribution import credentials_from_secrets as credentials_from_secrets
from ._import import ImageImportError as ImageImportError
from ._import import import_image as import_image
from ._local_registry import busybox_registry as busybox_registry
from ._local_registry import free_loopback_port as free_loopback_port
from ._local_registry import local_registry as local_registry
from ._local_registry import write_registry_config as write_registry_config
from ._reference import ImageReference as ImageReference
from ._reference import InvalidReference as InvalidReference
from ._reference import RegistryConfig as RegistryConfig
from ._store import Image as Image
from ._store import ImageStore as ImageStore
from ._unpack import UnsafeLayer as UnsafeLayer
from ._unpack import unpack_layer as unpack_layer

__all__ = [
    "BuiltImage",
    "Image",
    "ImageImportError",
    "ImageReference",
    "ImageStore",
    "InvalidReference",
    "RegistryClient",
    "RegistryConfig",
    "RegistryError",
    "UnsafeLayer",
    "build_from_file",
    "build_image",
    "busybox_registry",
    "credentials_from_secrets",
    "free_loopback_port",
    "import_image",
    "local_registry",
    "make_layer",
    "parse_buildfile",
    "push_image",
    "unpack_layer",
    "write_registry_config",
]

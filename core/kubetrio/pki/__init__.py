"""The cluster's certificates: a server CA, a client CA and the certificates they sign.

``ensure_cluster_pki(data_dir, ...)`` makes (on first start) or renews (certificates that
expire within :data:`RENEW_BEFORE`, or a serving certificate whose names changed) the files
under ``<data-dir>/pki/``, as kubeadm and k3s lay them out: the server CA signs the API
server's serving certificate, the client CA signs client certificates (the admin's,
``O=system:masters``; a node's, ``system:node:<name>`` in ``system:nodes``).
:class:`TLSConfig` turns a serving certificate into the ``ssl`` context an HTTPS server
uses; :func:`client_context` makes a client's. :func:`certificate_request` makes a CSR (with
:func:`new_private_key`), :func:`sign_request` signs one with a CA.
"""

from ._pki import CA_VALIDITY as CA_VALIDITY
from ._pki import LEAF_VALIDITY as LEAF_VALIDITY
from ._pki import RENEW_BEFORE as RENEW_BEFORE
from ._pki import CertificateAuthority as CertificateAuthority
from ._pki import ClusterPKI as ClusterPKI
from ._pki import KeyPair as KeyPair
from ._pki import ensure_cluster_pki as ensure_cluster_pki
from ._pki import local_addresses as local_addresses
from ._requests import certificate_request as certificate_request
from ._requests import new_private_key as new_private_key
from ._requests import sign_request as sign_request
from ._tls import AgentTLS as AgentTLS
from ._tls import TLSConfig as TLSConfig
from ._tls import client_context as client_context

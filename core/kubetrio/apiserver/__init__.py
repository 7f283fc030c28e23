"""The Kubernetes API server of kubetrio: HTTP on trio, Kubernetes semantics over the store.

``async with open_apiserver(store) as running:`` serves the API in-process (``running.url``);
``kubetrio server`` (:mod:`kubetrio.cli`) runs it, with the rest of a cluster, from the
command line.
"""

from ._audit import AuditLog as AuditLog
from ._audit import AuditPolicy as AuditPolicy
from ._audit import AuditPolicyError as AuditPolicyError
from ._audit import load_audit_policy as load_audit_policy
from ._audit import open_audit_log as open_audit_log
from ._audit import parse_audit_policy as parse_audit_policy
from ._connlimits import ConnectionGate as ConnectionGate
from ._connlimits import ServerLimits as ServerLimits
from ._connlimits import raise_fd_limit as raise_fd_limit
from ._http import MAX_BODY_BYTES as MAX_BODY_BYTES
from ._http import serve_http as serve_http
from ._kubeconfig import merge_kubeconfig as merge_kubeconfig
from ._run import RunningApiServer as RunningApiServer
from ._run import open_apiserver as open_apiserver
from ._server import KUBERNETES_VERSION as KUBERNETES_VERSION
from ._server import ApiServer as ApiServer
from ._services import KUBERNETES_SERVICE_IP as KUBERNETES_SERVICE_IP
from ._status import ApiError as ApiError
from ._tokens import ServiceAccountTokens as ServiceAccountTokens

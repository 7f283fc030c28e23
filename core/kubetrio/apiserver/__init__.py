"""The Kubernetes API server of kubetrio: HTTP on trio, Kubernetes semantics over the store.

``async with open_apiserver(store) as running:`` serves the API in-process (``running.url``);
``kubetrio server`` (:mod:`kubetrio.cli`) runs it, with the rest of a cluster, from the
command line.
"""

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

"""What several test folders share: polling, network-namespace helpers, manifests.

``from tests.kit import wait_for, serve_http_in, deployment`` — one copy of each, so a
fix to (say) how a test waits reaches every folder.
"""

from tests.kit.manifests import crd as crd
from tests.kit.manifests import deployment as deployment
from tests.kit.netns import netns_exec as netns_exec
from tests.kit.netns import root_or_skip as root_or_skip
from tests.kit.netns import serve_http_in as serve_http_in
from tests.kit.netns import sh as sh
from tests.kit.polling import wait_for as wait_for
from tests.kit.polling import wait_until as wait_until

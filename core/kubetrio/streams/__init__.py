"""Streaming protocols of ``pods/exec`` and ``pods/portforward``.

:mod:`._spdy` is SPDY/3.1 framing and a server session, :mod:`._websocket` a WebSocket
on a connection we upgraded ourselves (wsproto framing), :mod:`._agentwire` the API
server ↔ node agent protocol, :mod:`._bridge` the API server's relay between them.
"""

from ._bridge import StreamRefused as StreamRefused
from ._bridge import exec_upgrade as exec_upgrade
from ._bridge import exit_status as exit_status
from ._bridge import port_forward_upgrade as port_forward_upgrade
from ._spdy import SpdySession as SpdySession

__all__ = [
    "SpdySession",
    "StreamRefused",
    "exec_upgrade",
    "exit_status",
    "port_forward_upgrade",
]

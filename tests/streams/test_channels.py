"""The WebSocket channel protocol pieces: final Status, handshake headers, framing."""

from __future__ import annotations

import base64
import hashlib

import trio
import trio.testing
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong

from kubetrio.streams import exit_status
from kubetrio.streams._agentwire import FrameReader, frame
from kubetrio.streams._websocket import WebSocket, accept_headers


def test_exit_status() -> None:
    assert exit_status({"exitCode": 0}) == {"metadata": {}, "status": "Success"}
    failed = exit_status({"exitCode": 3}, ["sh", "-c", "exit 3"])
    assert failed["message"] == (
        "command terminated with non-zero exit code: "
        "error executing command [sh -c exit 3], exit code 3"
    )
    assert failed["reason"] == "NonZeroExitCode"
    assert failed["details"] == {"causes": [{"reason": "ExitCode", "message": "3"}]}
    assert exit_status(None)["status"] == "Failure"


def test_accept_headers() -> None:
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    expected = base64.b64encode(
        hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    ).decode()
    headers = dict(accept_headers(key, "v5.channel.k8s.io"))
    assert headers["sec-websocket-accept"] == expected
    assert headers["sec-websocket-protocol"] == "v5.channel.k8s.io"


async def test_websocket_messages_ping_and_close() -> None:
    near, far = trio.testing.memory_stream_pair()
    ws = WebSocket(far)
    peer = Connection(ConnectionType.CLIENT)
    with trio.fail_after(5):
        await near.send_all(peer.send(Ping(b"p")) + peer.send(BytesMessage(b"\x00hi")))
        assert await ws.receive() == b"\x00hi"
        await ws.send(b"\x01out")
        peer.receive_data(bytes(await near.receive_some(4096)))
        events = list(peer.events())
        assert isinstance(events[0], Pong)
        assert isinstance(events[1], BytesMessage) and events[1].data == b"\x01out"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ws.close, 1000)
            peer.receive_data(bytes(await near.receive_some(4096)))
            (close,) = list(peer.events())
            assert isinstance(close, CloseConnection) and close.code == 1000
            await near.send_all(peer.send(close.response()))


async def test_agent_frames() -> None:
    near, far = trio.testing.memory_stream_pair()
    with trio.fail_after(5):
        await near.send_all(frame(1, b"abc") + frame(255, b"\x00")[:3])
        reader = FrameReader(far, frame(0, b"x"))
        assert await reader.next() == (0, b"x")
        assert await reader.next() == (1, b"abc")
        await near.send_all(frame(255, b"\x00")[3:])
        assert await reader.next() == (255, b"\x00")
        await near.aclose()
        assert await reader.next() is None

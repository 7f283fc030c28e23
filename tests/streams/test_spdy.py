"""SPDY/3.1 framing: captured kubectl frames, a round-trip fuzz, the server session."""

from __future__ import annotations

import zlib
from pathlib import Path

import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from kubetrio.streams._spdy import (
    DICTIONARY,
    FLAG_FIN,
    GOAWAY,
    PING,
    RST_STREAM,
    SETTINGS,
    SYN_REPLY,
    SYN_STREAM,
    WINDOW_UPDATE,
    Frame,
    FrameDecoder,
    HeaderCodec,
    SpdySession,
    encode_frame,
)

DATA = Path(__file__).parent / "data"


def test_dictionary_is_the_spdy3_one() -> None:
    # Length and Adler-32 of the dictionary of the SPDY/3 draft (§2.6.10.1); zlib puts
    # the Adler-32 of the dictionary in the stream, so a peer rejects any other.
    assert len(DICTIONARY) == 1423
    assert zlib.adler32(DICTIONARY) == 3821447106
    assert DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert DICTIONARY.endswith(b",*,enq=0.")


def test_captured_kubectl_1_27_exec_frames() -> None:
    """``echo hi | kubectl.1.27 exec -i box -- sh -c 'cat; exit 2'``, client to server."""
    frames = list(
        FrameDecoder(HeaderCodec()).feed((DATA / "kubectl-1.27-exec-stdin.spdy").read_bytes())
    )
    opened = [(f.stream_id, dict(f.headers)) for f in frames if f.kind == SYN_STREAM]
    assert opened == [
        (1, {"streamtype": "error"}),
        (3, {"streamtype": "stdin"}),
        (5, {"streamtype": "stdout"}),
        (7, {"streamtype": "stderr"}),
    ]
    data = [(f.stream_id, f.data, f.fin) for f in frames if f.kind == 0]
    assert data == [(3, b"hi\n", False), (3, b"", True)]
    assert [f.stream_id for f in frames if f.kind == RST_STREAM] == [5, 7, 1]
    assert frames[-1].kind == GOAWAY


headers = st.lists(
    st.tuples(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=20),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=50),
    ),
    max_size=6,
)
stream_ids = st.integers(min_value=1, max_value=2**31 - 1)
frames = st.one_of(
    st.builds(
        Frame,
        kind=st.just(0),
        stream_id=stream_ids,
        flags=st.sampled_from([0, FLAG_FIN]),
        data=st.binary(max_size=3000),
    ),
    st.builds(
        Frame,
        kind=st.just(SYN_STREAM),
        stream_id=stream_ids,
        associated_id=st.integers(min_value=0, max_value=2**31 - 1),
        priority=st.integers(min_value=0, max_value=7),
        flags=st.sampled_from([0, FLAG_FIN]),
        headers=headers,
    ),
    st.builds(Frame, kind=st.just(SYN_REPLY), stream_id=stream_ids, headers=headers),
    st.builds(
        Frame,
        kind=st.sampled_from([RST_STREAM, GOAWAY]),
        stream_id=stream_ids,
        status=st.integers(min_value=0, max_value=2**32 - 1),
    ),
    st.builds(Frame, kind=st.just(PING), value=st.integers(min_value=0, max_value=2**32 - 1)),
    st.builds(
        Frame,
        kind=st.just(WINDOW_UPDATE),
        stream_id=stream_ids,
        value=st.integers(min_value=1, max_value=2**31 - 1),
    ),
    st.builds(
        Frame,
        kind=st.just(SETTINGS),
        settings=st.lists(
            st.tuples(
                st.integers(0, 255),
                st.integers(0, 2**24 - 1),
                st.integers(0, 2**32 - 1),
            ),
            max_size=4,
        ),
    ),
)


@given(st.lists(frames, max_size=12), st.integers(min_value=1, max_value=64))
def test_round_trip(sent: list[Frame], split: int) -> None:
    """Frames survive encode → arbitrary chunking → decode, with one zlib stream each way."""
    out, into = HeaderCodec(), HeaderCodec()
    wire = b"".join(encode_frame(f, out) for f in sent)
    decoder = FrameDecoder(into)
    got = []
    for i in range(0, len(wire), split):
        got += list(decoder.feed(wire[i : i + split]))
    assert got == sent


async def test_session_replies_and_pings() -> None:
    client, server = trio.testing.memory_stream_pair()
    session = SpdySession(server)
    codec = HeaderCodec()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            await client.send_all(
                encode_frame(Frame(SYN_STREAM, stream_id=1, headers=[("streamtype", "x")]), codec)
                + encode_frame(Frame(PING, value=7), codec)
                + encode_frame(Frame(0, stream_id=1, data=b"abc", flags=FLAG_FIN), codec)
            )
            stream = await session.accept()
            assert stream is not None and stream.header("streamtype") == "x"
            assert await stream.receive() == b"abc"
            assert await stream.receive() == b""
            await stream.send(b"out", fin=True)
            decoder, seen = FrameDecoder(HeaderCodec()), list[Frame]()
            while len(seen) < 3:
                seen += list(decoder.feed(bytes(await client.receive_some(4096))))
            assert [(f.kind, f.stream_id) for f in seen] == [(SYN_REPLY, 1), (PING, 0), (0, 1)]
            assert seen[1].value == 7 and seen[2].data == b"out" and seen[2].fin
            await client.aclose()
            assert await session.accept() is None

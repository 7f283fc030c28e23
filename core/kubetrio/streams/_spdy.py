"""SPDY/3.1 framing and a server-side session, as kubectl's client-go speaks it.

kubectl 1.27-1.29 runs exec/attach over SPDY/3.1 and every kubectl runs port-forward over
it (1.31+ inside WebSocket binary messages). The client opens every stream (SYN_STREAM
with a ``streamtype`` header); the server answers SYN_REPLY, moves bytes in DATA frames,
ends its half with FLAG_FIN, and answers PING. client-go's spdystream does no flow
control, so WINDOW_UPDATE and SETTINGS are parsed and ignored.

Header blocks are compressed with one zlib stream per direction for the whole session,
primed with the SPDY/3 dictionary, each block ending with a sync flush.
"""

from __future__ import annotations

import contextlib
import dataclasses
import struct
import zlib
from collections.abc import Iterator

import trio

VERSION = 3
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02

SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9

RST_PROTOCOL_ERROR = 1
RST_INVALID_STREAM = 2
RST_REFUSED_STREAM = 3
RST_CANCEL = 5


def _dictionary() -> bytes:
    # The SPDY/3 header dictionary (draft-mbelshe-httpbis-spdy-00 §2.6.10.1): a run of
    # length-prefixed header words, then plain text. Built here rather than pasted as
    # 1423 hex bytes; the unit tests pin its length and checksum.
    words = (  # noqa: SIM905 - one long list literal would be harder to check by eye
        "options head post put delete trace accept accept-charset accept-encoding "
        "accept-language accept-ranges age allow authorization cache-control connection "
        "content-base content-encoding content-language content-length content-location "
        "content-md5 content-range content-type date etag expect expires from host if-match "
        "if-modified-since if-none-match if-range if-unmodified-since last-modified location "
        "max-forwards pragma proxy-authenticate proxy-authorization range referer "
        "retry-after server te trailer transfer-encoding upgrade user-agent vary via warning "
        "www-authenticate method get status"
    ).split()
    words += ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive"]
    words += ["origin"]
    out = b"".join(struct.pack(">I", len(w)) + w.encode() for w in words)
    tail = (
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417"
        "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
        "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
        "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct "
        "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,"
        "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
        "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset="
        "iso-8859-1,utf-,*,enq=0."
    )
    return out + tail.encode()


DICTIONARY = _dictionary()
"""The SPDY/3 zlib dictionary for header blocks."""

Headers = list[tuple[str, str]]


class ProtocolError(Exception):
    """The peer sent something that is not SPDY/3.1."""


@dataclasses.dataclass
class Frame:
    """One SPDY frame. ``kind`` 0 is a DATA frame; others are control frame types.

    Fields that a kind does not use stay at their defaults: ``stream_id`` (DATA,
    SYN_*, RST_STREAM, HEADERS, WINDOW_UPDATE; the last good stream for GOAWAY),
    ``headers`` (SYN_*, HEADERS), ``data`` (DATA), ``status`` (RST_STREAM, GOAWAY),
    ``value`` (PING id, WINDOW_UPDATE delta), ``settings`` (SETTINGS).
    """

    kind: int
    stream_id: int = 0
    flags: int = 0
    data: bytes = b""
    headers: Headers = dataclasses.field(default_factory=list)
    associated_id: int = 0
    priority: int = 0
    status: int = 0
    value: int = 0
    settings: list[tuple[int, int, int]] = dataclasses.field(default_factory=list)

    @property
    def fin(self) -> bool:
        """Whether the sender ends its half of the stream with this frame."""
        return bool(self.flags & FLAG_FIN)


class HeaderCodec:
    """Header block (de)compression of one direction pair: one zlib stream each way."""

    def __init__(self) -> None:
        self._compress = zlib.compressobj(zdict=DICTIONARY)
        self._decompress = zlib.decompressobj(zdict=DICTIONARY)

    def encode(self, headers: Headers) -> bytes:
        """Serialise and compress a header block (sync-flushed, so it stands alone)."""
        raw = [struct.pack(">I", len(headers))]
        for name, value in headers:
            n, v = name.lower().encode(), value.encode()
            raw.append(struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v)
        return self._compress.compress(b"".join(raw)) + self._compress.flush(zlib.Z_SYNC_FLUSH)

    def decode(self, block: bytes) -> Headers:
        """Decompress and parse a header block; NUL-separated values become repeats."""
        try:
            raw = self._decompress.decompress(block)
        except zlib.error as exc:
            raise ProtocolError(f"header block: {exc}") from exc
        try:
            (count,) = struct.unpack_from(">I", raw, 0)
            pos, headers = 4, []
            for _ in range(count):
                (n,) = struct.unpack_from(">I", raw, pos)
                name = raw[pos + 4 : pos + 4 + n].decode("latin-1")
                pos += 4 + n
                (v,) = struct.unpack_from(">I", raw, pos)
                value = raw[pos + 4 : pos + 4 + v].decode("latin-1")
                pos += 4 + v
                headers += [(name, part) for part in value.split("\0")]
        except struct.error as exc:
            raise ProtocolError("truncated header block") from exc
        return headers


def encode_frame(frame: Frame, codec: HeaderCodec) -> bytes:
    """The wire bytes of ``frame`` (header blocks go through ``codec``)."""
    kind = frame.kind
    if kind == 0:
        body = frame.data
        head = struct.pack(">II", frame.stream_id & 0x7FFFFFFF, (frame.flags << 24) | len(body))
        return head + body
    if kind == SYN_STREAM:
        body = struct.pack(
            ">IIBB", frame.stream_id, frame.associated_id, (frame.priority & 7) << 5, 0
        ) + codec.encode(frame.headers)
    elif kind in (SYN_REPLY, HEADERS):
        body = struct.pack(">I", frame.stream_id) + codec.encode(frame.headers)
    elif kind in (RST_STREAM, GOAWAY):
        body = struct.pack(">II", frame.stream_id, frame.status)
    elif kind == PING:
        body = struct.pack(">I", frame.value)
    elif kind == WINDOW_UPDATE:
        body = struct.pack(">II", frame.stream_id, frame.value)
    elif kind == SETTINGS:
        body = struct.pack(">I", len(frame.settings)) + b"".join(
            struct.pack(">II", (f << 24) | i, v) for f, i, v in frame.settings
        )
    else:
        raise ValueError(f"unknown control frame type {kind}")
    return struct.pack(">HHI", 0x8000 | VERSION, kind, (frame.flags << 24) | len(body)) + body


class FrameDecoder:
    """Incremental parser: ``feed`` bytes, iterate the complete frames."""

    def __init__(self, codec: HeaderCodec) -> None:
        self.codec = codec
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[Frame]:
        """Add bytes; yield every frame now complete."""
        self._buffer += data
        while len(self._buffer) >= 8:
            word, flags_len = struct.unpack_from(">II", self._buffer, 0)
            length = flags_len & 0xFFFFFF
            if len(self._buffer) < 8 + length:
                return
            body = bytes(self._buffer[8 : 8 + length])
            del self._buffer[: 8 + length]
            yield self._parse(word, flags_len >> 24, body)

    def _parse(self, word: int, flags: int, body: bytes) -> Frame:
        if not word & 0x80000000:
            return Frame(0, stream_id=word & 0x7FFFFFFF, flags=flags, data=body)
        version, kind = (word >> 16) & 0x7FFF, word & 0xFFFF
        if version != VERSION:
            raise ProtocolError(f"SPDY version {version} is not supported")
        try:
            if kind == SYN_STREAM:
                sid, assoc, prio, _slot = struct.unpack_from(">IIBB", body)
                return Frame(
                    kind,
                    stream_id=sid & 0x7FFFFFFF,
                    associated_id=assoc & 0x7FFFFFFF,
                    priority=prio >> 5,
                    flags=flags,
                    headers=self.codec.decode(body[10:]),
                )
            if kind in (SYN_REPLY, HEADERS):
                (sid,) = struct.unpack_from(">I", body)
                return Frame(
                    kind,
                    stream_id=sid & 0x7FFFFFFF,
                    flags=flags,
                    headers=self.codec.decode(body[4:]),
                )
            if kind in (RST_STREAM, GOAWAY):
                sid, status = struct.unpack_from(">II", body)
                return Frame(kind, stream_id=sid & 0x7FFFFFFF, flags=flags, status=status)
            if kind == PING:
                return Frame(kind, flags=flags, value=struct.unpack_from(">I", body)[0])
            if kind == WINDOW_UPDATE:
                sid, delta = struct.unpack_from(">II", body)
                return Frame(kind, stream_id=sid & 0x7FFFFFFF, value=delta & 0x7FFFFFFF)
            if kind == SETTINGS:
                (count,) = struct.unpack_from(">I", body)
                settings = []
                for i in range(count):
                    fid, value = struct.unpack_from(">II", body, 4 + 8 * i)
                    settings.append((fid >> 24, fid & 0xFFFFFF, value))
                return Frame(kind, flags=flags, settings=settings)
        except struct.error as exc:
            raise ProtocolError(f"truncated control frame type {kind}") from exc
        return Frame(kind, flags=flags, data=body)  # unknown types are ignored by callers


class SpdyStream:
    """One client-initiated stream of a :class:`SpdySession`."""

    def __init__(self, session: SpdySession, stream_id: int, headers: Headers) -> None:
        self.session = session
        self.id = stream_id
        self.headers = headers
        self._send, self._receive = trio.open_memory_channel[bytes](256)
        self.fin_sent = False

    def header(self, name: str) -> str:
        """The first value of a request header (names are lower case), or ``""``."""
        return next((v for k, v in self.headers if k == name), "")

    async def receive(self) -> bytes:
        """The next chunk from the client; ``b""`` once it half-closed or reset."""
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return b""

    async def send(self, data: bytes, *, fin: bool = False) -> None:
        """Send bytes (in frames of at most 32 KiB); ``fin`` ends our half."""
        if self.fin_sent:
            return
        view = memoryview(data)
        while len(view) > 32768:
            await self.session.send_frame(Frame(0, stream_id=self.id, data=bytes(view[:32768])))
            view = view[32768:]
        self.fin_sent = fin
        await self.session.send_frame(
            Frame(0, stream_id=self.id, data=bytes(view), flags=FLAG_FIN if fin else 0)
        )

    async def close(self) -> None:
        """End our half of the stream (an empty DATA frame with FLAG_FIN)."""
        await self.send(b"", fin=True)

    def _remote_closed(self) -> None:
        self._send.close()


class SpdySession:
    """The server end of a SPDY/3.1 connection over any byte stream.

    ``run`` reads frames until the peer goes away; each SYN_STREAM is answered with a
    SYN_REPLY and handed out through ``accept``. PINGs are echoed.
    """

    def __init__(self, stream: trio.abc.Stream, initial: bytes = b"") -> None:
        self.stream = stream
        self.codec = HeaderCodec()
        self.decoder = FrameDecoder(self.codec)
        self.initial = initial
        self.streams: dict[int, SpdyStream] = {}
        self._new_send, self._new_receive = trio.open_memory_channel[SpdyStream](64)
        self._lock = trio.Lock()
        self.closed = trio.Event()

    async def send_frame(self, frame: Frame) -> None:
        """Encode and write one frame (header compression needs the lock's ordering)."""
        async with self._lock:
            await self.stream.send_all(encode_frame(frame, self.codec))

    async def accept(self) -> SpdyStream | None:
        """The next stream the client opened; None once the connection ended."""
        try:
            return await self._new_receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return None

    async def run(self) -> None:
        """Read and dispatch frames until end of input; then end every stream."""
        try:
            data = self.initial
            while True:
                for frame in self.decoder.feed(data):
                    await self._dispatch(frame)
                data = bytes(await self.stream.receive_some(65536))
                if not data:
                    break
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            pass
        finally:
            self.closed.set()
            self._new_send.close()
            for s in self.streams.values():
                s._remote_closed()

    async def _dispatch(self, frame: Frame) -> None:
        if frame.kind == 0:
            s = self.streams.get(frame.stream_id)
            if s is None:
                return
            if frame.data:
                with contextlib.suppress(trio.ClosedResourceError):
                    await s._send.send(frame.data)
            if frame.fin:
                s._remote_closed()
        elif frame.kind == SYN_STREAM:
            s = SpdyStream(self, frame.stream_id, frame.headers)
            self.streams[s.id] = s
            await self.send_frame(Frame(SYN_REPLY, stream_id=s.id))
            if frame.fin:
                s._remote_closed()
            await self._new_send.send(s)
        elif frame.kind == RST_STREAM:
            s = self.streams.get(frame.stream_id)
            if s is not None:
                s.fin_sent = True  # nothing more may be sent on a reset stream
                s._remote_closed()
        elif frame.kind == PING:
            await self.send_frame(frame)
        elif frame.kind == GOAWAY:
            self._new_send.close()

    async def goaway(self) -> None:
        """Tell the client no more streams will be accepted."""
        last = max(self.streams, default=0)
        await self.send_frame(Frame(GOAWAY, stream_id=last))

"""Frames over iroh (QUIC, peer to peer): one bidirectional stream on its own connection per channel.

Offline-safe by default: the minimal preset (no discovery, no n0 services) and relays disabled, so
peers dial each other's direct addresses carried in the endpoint ticket. `relay=True` switches to
iroh's n0 preset (relays + discovery) for peers behind NATs on the internet.

All iroh nodes of a process must live on one asyncio event loop: the bindings keep one global loop
(`uniffi_set_event_loop`), which `IrohNode.start` sets to the running loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterator

import iroh
from iroh import iroh_ffi

from engine.errors import InvalidInput
from engine.transport import iroh_fix
from engine.transport.base import HELLO, HELLO_TIMEOUT_S, Channel, ConnectionClosed, Node
from engine.transport.frames import DEFAULT_LIMITS, FrameLimits

log = logging.getLogger(__name__)

ALPN = b"prismn/1"
CONNECT_TIMEOUT_S = 10.0
# QUIC application error codes this module closes connections with.
CLOSE_NORMAL = 0
CLOSE_BAD_HELLO = 1
# Bytes cross the FFI in pieces of at most this size. The bindings convert every byte on the
# calling (event loop) thread, so pieces let that work overlap with QUIC's own threads sending and
# receiving the previous piece, and keep the data in cache. 16 MiB frames on loopback
# (benchmarks/bench_transport.py --piece-kib, 2-core box): whole-payload calls ~260-300 MB/s,
# 1 MiB pieces ~480, 256 KiB ~620, 128 KiB ~570, 64 KiB ~480 (each call has a fixed cost of
# ~40 us). 256 KiB also costs the least CPU: 3.1-3.2 ms per MiB (both ends) against 4.0-4.8 for
# whole-payload calls.
PIECE_BYTES = 256 * 2**10

iroh_fix.apply()


def _describe(error: BaseException) -> str:
    if isinstance(error, iroh.IrohError):
        return f"{error.kind().name}: {error.message()}"
    return str(error) or type(error).__name__


class IrohChannel(Channel):
    """A channel on one bidirectional QUIC stream; the channel owns its connection."""

    def __init__(
        self,
        connection: iroh.Connection,
        stream: iroh.BiStream,
        limits: FrameLimits = DEFAULT_LIMITS,
        allowed_types: Collection[str] | None = None,
    ) -> None:
        super().__init__(limits, allowed_types)
        self._connection = connection
        self._send_stream = stream.send()
        self._recv_stream = stream.recv()
        self._peer = str(connection.remote_id())
        # Bytes read from the stream that the frame reader has not consumed yet: reads ask for a
        # whole piece, so one call usually brings a small frame's prefix, header and payload.
        self._unread = memoryview(b"")

    @property
    def peer(self) -> str:
        return self._peer

    @property
    def rtt_ms(self) -> int | None:
        """QUIC's current round-trip estimate on the selected path."""
        return self._connection.rtt()

    async def _read_exact(self, num_bytes: int) -> bytes:
        pieces = []
        missing = num_bytes
        while missing:
            if not self._unread:
                self._unread = memoryview(await self._read_piece())
                if not self._unread:
                    raise ConnectionClosed(
                        f"{self._peer[:10]} ended the stream after {num_bytes - missing} of {num_bytes} bytes"
                    )
            piece, self._unread = self._unread[:missing], self._unread[missing:]
            pieces.append(piece)
            missing -= len(piece)
        return b"".join(pieces)

    async def _read_some(self, max_bytes: int) -> bytes:
        if not self._unread:
            return await self._read_piece(max_bytes)
        piece, self._unread = self._unread[:max_bytes], self._unread[max_bytes:]
        return bytes(piece)

    async def _read_piece(self, max_bytes: int | None = None) -> bytes:
        """What the stream has ready, up to `max_bytes` (default `PIECE_BYTES`; waits for at least
        one byte); b"" at its end."""
        try:
            return await self._recv_stream.read(max_bytes or PIECE_BYTES)
        except iroh.IrohError as exc:
            raise ConnectionClosed(f"{self._peer[:10]}: {_describe(exc)}") from None

    async def _write(self, chunks: list[bytes]) -> None:
        try:
            for piece in _pieces(chunks, PIECE_BYTES):
                await self._send_stream.write_all(piece)
        except iroh.IrohError as exc:
            raise ConnectionClosed(f"{self._peer[:10]}: {_describe(exc)}") from None

    async def _finish_sending(self) -> None:
        try:
            await self._send_stream.finish()
        except iroh.IrohError as exc:
            raise ConnectionClosed(_describe(exc)) from None

    def _release(self) -> None:
        try:
            self._connection.close(CLOSE_NORMAL, b"closed")
        except iroh.IrohError:
            pass


def _pieces(chunks: list[bytes], piece_bytes: int) -> Iterator[bytes]:
    """The bytes of `chunks`, in order, regrouped into pieces of `piece_bytes` (the last may be
    shorter): a frame's prefix and header travel with the start of its payload."""
    carry = b""
    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        offset = 0
        if carry:
            offset = piece_bytes - len(carry)
            carry += view[:offset]
            if len(carry) < piece_bytes:
                continue
            yield carry
        while view.nbytes - offset >= piece_bytes:
            yield bytes(view[offset : offset + piece_bytes])
            offset += piece_bytes
        carry = chunk if offset == 0 and type(chunk) is bytes else bytes(view[offset:])
    if carry:
        yield carry


class IrohNode(Node):
    """An iroh endpoint that accepts and opens Prismn channels.

    `address` is the endpoint ticket (a base32 string with the endpoint id and its direct
    addresses, plus the relay URL when relays are on); a peer passes it to `connect`.
    """

    def __init__(
        self, endpoint: iroh.Endpoint, limits: FrameLimits, allowed_types: Collection[str] | None
    ) -> None:
        super().__init__()
        self.limits = limits
        self.allowed_types = allowed_types
        self._endpoint: iroh.Endpoint | None = endpoint
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @classmethod
    async def start(
        cls,
        bind_addr: str = "127.0.0.1:0",
        secret_key: bytes | None = None,
        relay: bool = False,
        limits: FrameLimits = DEFAULT_LIMITS,
        allowed_types: Collection[str] | None = None,
    ) -> IrohNode:
        """Bind an endpoint at `bind_addr` ("0.0.0.0:0" to accept from other machines).

        `secret_key` (32 bytes) keeps the endpoint id stable across restarts; a fresh one otherwise.
        """
        if secret_key is not None and len(secret_key) != 32:
            raise InvalidInput("secret_key", f"<{len(secret_key)} bytes>", "must be 32 bytes")
        iroh_ffi.uniffi_set_event_loop(asyncio.get_running_loop())
        options = iroh.EndpointOptions(
            preset=iroh.preset_n0() if relay else iroh.preset_minimal(),
            bind_addr=bind_addr,
            secret_key=secret_key,
            alpns=[ALPN],
            relay_mode=iroh.RelayMode.default_mode() if relay else iroh.RelayMode.disabled(),
        )
        try:
            endpoint = await iroh.Endpoint.bind(options)
        except iroh.IrohError as exc:
            raise InvalidInput(
                "bind_addr", bind_addr, f"cannot bind an iroh endpoint: {_describe(exc)}"
            ) from None
        node = cls(endpoint, limits, allowed_types)
        node._spawn(node._accept_loop())
        return node

    @property
    def address(self) -> str:
        return str(iroh.EndpointTicket.from_addr(self._open_endpoint().addr()))

    @property
    def endpoint_id(self) -> str:
        return str(self._open_endpoint().id())

    @property
    def bound_sockets(self) -> list[str]:
        """The local UDP sockets ("host:port") the endpoint listens on, IPv4 first."""
        return list(self._open_endpoint().bound_sockets())

    def _open_endpoint(self) -> iroh.Endpoint:
        if self._endpoint is None:
            raise ConnectionClosed("node is closed")
        return self._endpoint

    async def connect(self, address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> IrohChannel:
        if self._closed:
            raise ConnectionClosed("node is closed")
        try:
            endpoint_addr = iroh.EndpointTicket.from_string(address).endpoint_addr()
        except (iroh.IrohError, TypeError) as exc:
            raise InvalidInput("address", address, f"not an iroh endpoint ticket: {_describe(exc)}") from None
        try:
            connection = await asyncio.wait_for(self._open_endpoint().connect(endpoint_addr, ALPN), timeout_s)
            stream = await asyncio.wait_for(connection.open_bi(), timeout_s)
        except TimeoutError:
            raise ConnectionClosed(f"cannot reach {address[:24]}...: timed out after {timeout_s} s") from None
        except iroh.IrohError as exc:
            raise ConnectionClosed(f"cannot reach {address[:24]}...: {_describe(exc)}") from None
        channel = IrohChannel(connection, stream, self.limits, self.allowed_types)
        await channel._write([HELLO])
        return channel

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._stop_accepting()
        await self._endpoint.close()
        # The UDP socket is freed only when the Rust endpoint is dropped: drop our handle now so
        # the port can be bound again at once, rather than whenever the garbage collector runs.
        self._endpoint = None

    def _spawn(self, coroutine) -> None:  # noqa: ANN001
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept_loop(self) -> None:
        while True:
            incoming = await self._open_endpoint().accept_next()
            if incoming is None:  # endpoint closed
                return
            self._spawn(self._handshake(incoming))

    async def _handshake(self, incoming: iroh.Incoming) -> None:
        connection = None
        try:
            connection = await asyncio.wait_for((await incoming.accept()).connect(), HELLO_TIMEOUT_S)
            stream = await asyncio.wait_for(connection.accept_bi(), HELLO_TIMEOUT_S)
            hello = await asyncio.wait_for(stream.recv().read_exact(len(HELLO)), HELLO_TIMEOUT_S)
        except (iroh.IrohError, TimeoutError) as exc:
            log.info("dropping incoming iroh connection: %s", _describe(exc))
            if connection is not None:
                connection.close(CLOSE_BAD_HELLO, b"no hello")
            return
        if hello != HELLO:
            log.info(
                "dropping iroh connection from %s: hello %r is not %r", connection.remote_id(), hello, HELLO
            )
            connection.close(CLOSE_BAD_HELLO, b"bad hello")
            return
        self._offer(IrohChannel(connection, stream, self.limits, self.allowed_types))

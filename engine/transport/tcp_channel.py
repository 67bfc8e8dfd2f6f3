"""Frames over plain TCP (asyncio streams): for LAN peers, and as the yardstick for iroh."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Collection

from engine.errors import InvalidInput
from engine.transport.base import HELLO, HELLO_TIMEOUT_S, Channel, ConnectionClosed, Node
from engine.transport.frames import DEFAULT_LIMITS, FrameLimits

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
# asyncio pauses a socket whose read buffer holds 2x this; the 64 KiB default makes a 16 MiB
# frame pause and resume the socket hundreds of times.
STREAM_BUFFER_BYTES = 4 * 2**20


def parse_host_port(address: str, field: str = "address", allow_port_0: bool = False) -> tuple[str, int]:
    """("host", port) from "host:port" or "[v6]:port"; InvalidInput(field, ...) otherwise.

    Port 0 ("any free port") is accepted only for binding (`allow_port_0`).
    """
    if not isinstance(address, str):
        raise InvalidInput(field, address, "expected a 'host:port' string")
    host, sep, port_text = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    lowest_port = 0 if allow_port_0 else 1
    if not sep or not host or not port_text.isdigit() or not lowest_port <= int(port_text) < 65536:
        raise InvalidInput(field, address, f"expected 'host:port' with a port in {lowest_port}..65535")
    return host, int(port_text)


def format_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class TcpChannel(Channel):
    """A channel on one TCP connection."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        limits: FrameLimits = DEFAULT_LIMITS,
        allowed_types: Collection[str] | None = None,
    ) -> None:
        super().__init__(limits, allowed_types)
        self._reader = reader
        self._writer = writer
        peername = writer.get_extra_info("peername")
        self._peer = format_host_port(*peername[:2]) if peername else "?"

    @property
    def peer(self) -> str:
        return self._peer

    async def _read_exact(self, num_bytes: int) -> bytes:
        try:
            return await self._reader.readexactly(num_bytes)
        except asyncio.IncompleteReadError as exc:
            raise ConnectionClosed(
                f"{self._peer} ended the stream after {len(exc.partial)} of {num_bytes} bytes"
            ) from None
        except OSError as exc:
            raise ConnectionClosed(f"{self._peer}: {exc}") from None

    async def _read_some(self, max_bytes: int) -> bytes:
        try:
            return await self._reader.read(max_bytes)
        except OSError as exc:
            raise ConnectionClosed(f"{self._peer}: {exc}") from None

    async def _write(self, chunks: list[bytes]) -> None:
        try:
            for chunk in chunks:
                self._writer.write(chunk)
            await self._writer.drain()
        except OSError as exc:  # ConnectionResetError, BrokenPipeError, ...
            raise ConnectionClosed(f"{self._peer}: {exc}") from None
        except RuntimeError as exc:  # "write() after write_eof()": this side closed it meanwhile
            raise ConnectionClosed(f"{self._peer}: {exc}") from None

    async def _finish_sending(self) -> None:
        if self._writer.can_write_eof() and not self._writer.is_closing():
            self._writer.write_eof()

    def _release(self) -> None:
        self._writer.close()


class TcpNode(Node):
    """A TCP listener that also dials. Start with `await TcpNode.start("127.0.0.1:0")`.

    `address` is the bound "host:port" (or `advertise_addr` when given: use that when binding
    0.0.0.0, which peers cannot dial).
    """

    def __init__(self, limits: FrameLimits, allowed_types: Collection[str] | None) -> None:
        super().__init__()
        self.limits = limits
        self.allowed_types = allowed_types
        self._server: asyncio.Server | None = None
        self._address = ""
        self._handshakes: set[asyncio.Task[None]] = set()
        # Channels this node accepted or dialed, released when it closes (as iroh's endpoint does).
        self._channels: weakref.WeakSet[TcpChannel] = weakref.WeakSet()

    @classmethod
    async def start(
        cls,
        bind_addr: str = "127.0.0.1:0",
        advertise_addr: str | None = None,
        limits: FrameLimits = DEFAULT_LIMITS,
        allowed_types: Collection[str] | None = None,
    ) -> TcpNode:
        host, port = parse_host_port(bind_addr, "bind_addr", allow_port_0=True)
        node = cls(limits, allowed_types)
        try:
            node._server = await asyncio.start_server(
                node._on_connection, host, port, limit=STREAM_BUFFER_BYTES
            )
        except OSError as exc:
            raise InvalidInput("bind_addr", bind_addr, f"cannot listen: {exc}") from None
        bound_host, bound_port = node._server.sockets[0].getsockname()[:2]
        if advertise_addr is not None:
            parse_host_port(advertise_addr, "advertise_addr")
        node._address = advertise_addr or format_host_port(bound_host, bound_port)
        return node

    @property
    def address(self) -> str:
        return self._address

    async def connect(self, address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> TcpChannel:
        if self._server is None:
            raise ConnectionClosed("node is closed")
        channel = await tcp_connect(address, self.limits, self.allowed_types, timeout_s)
        self._channels.add(channel)
        return channel

    async def close(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        for task in list(self._handshakes):
            task.cancel()
        self._stop_accepting()
        for channel in list(self._channels):
            channel._closed = True
            channel._release()
        # Not server.wait_closed(): from Python 3.12 it also waits for every client to hang up.

    def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._handshake(reader, writer))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        channel = TcpChannel(reader, writer, self.limits, self.allowed_types)
        try:
            hello = await asyncio.wait_for(reader.readexactly(len(HELLO)), HELLO_TIMEOUT_S)
        except (asyncio.IncompleteReadError, TimeoutError, OSError) as exc:
            log.info("dropping TCP connection from %s: no hello (%s)", channel.peer, exc)
            channel._release()
            return
        if hello != HELLO:
            log.info("dropping TCP connection from %s: hello %r is not %r", channel.peer, hello, HELLO)
            channel._release()
            return
        self._channels.add(channel)
        self._offer(channel)


async def tcp_connect(
    address: str,
    limits: FrameLimits = DEFAULT_LIMITS,
    allowed_types: Collection[str] | None = None,
    timeout_s: float = CONNECT_TIMEOUT_S,
) -> TcpChannel:
    """A channel to the TcpNode at `address` ("host:port"), without listening here."""
    host, port = parse_host_port(address)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, limit=STREAM_BUFFER_BYTES), timeout_s
        )
    except (OSError, TimeoutError) as exc:
        raise ConnectionClosed(f"cannot reach {address}: {exc or 'timed out'}") from None
    channel = TcpChannel(reader, writer, limits, allowed_types)
    await channel._write([HELLO])
    return channel

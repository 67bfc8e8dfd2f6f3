"""The channel interface every transport implements, and the frame reading/writing they share.

A `Channel` is one ordered, reliable, bidirectional stream of frames between two peers. A `Node`
listens on an address a peer can dial and dials others; each transport (iroh, TCP) provides one.
Concrete channels only supply four byte-level primitives; framing, limits, locking, recovery from
bad frames and the graceful close live here once.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Any

from engine.errors import PrismnError
from engine.transport.frames import (
    DEFAULT_LIMITS,
    PREFIX_BYTES,
    FrameError,
    FrameLimits,
    decode_header,
    encode_prefix_and_header,
    parse_prefix,
)

# Sent by the dialer right after opening the stream: identifies Prismn and its frame version, and
# makes an iroh stream visible to the acceptor (QUIC announces a stream only once data flows).
HELLO = b"prismn/1"
HELLO_TIMEOUT_S = 10.0
# Frames with payloads up to this size are written and read in one piece (fewer FFI round trips
# on iroh, at the cost of one small copy); larger payloads are passed through uncopied.
SMALL_FRAME_BYTES = 64 * 1024
# How long a closed channel waits in the background for the peer's end-of-stream before it
# drops the connection.
LINGER_S = 10.0
# Strong references to lingering closes, so the event loop does not lose them.
_LINGERING: set[asyncio.Task[None]] = set()


def _retrieve_outcome(reading: asyncio.Future) -> None:
    """Mark a frame read's error as seen: its recv() may have been cancelled and nobody asks."""
    if not reading.cancelled():
        reading.exception()


class ConnectionClosed(PrismnError):
    """The peer closed the channel, the connection dropped, or this side closed it."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"connection closed: {reason}")


class Channel(abc.ABC):
    """A framed, ordered, reliable channel to one peer.

    `send` and `recv` are each safe to call from several tasks (frames never interleave).
    `send` applies backpressure: it returns once the frame is handed to the transport, which for
    iroh means within the peer's stream window (about 1.25 MB); larger frames need the peer to be
    reading concurrently.
    `recv` raises `FrameError` for a bad frame: if `error.recoverable`, the frame was consumed and
    the channel keeps working; if not (a length over the limits, a stream cut inside a frame), the
    channel has been closed. `recv` raises `ConnectionClosed` once the peer is gone; call
    `close` then too, which releases the connection.
    """

    def __init__(self, limits: FrameLimits = DEFAULT_LIMITS, allowed_types: Collection[str] | None = None):
        self.limits = limits
        self.allowed_types = frozenset(allowed_types) if allowed_types is not None else None
        self._send_lock = asyncio.Lock()
        self._recv_lock = asyncio.Lock()
        self._closed = False
        self._peer_finished = asyncio.Event()
        # The frame being written; it outlives a send() that was cancelled half-way.
        self._writing: asyncio.Future[None] | None = None
        # The frame being read; it outlives a recv() that was cancelled half-way.
        self._reading: asyncio.Future[tuple[dict[str, Any], bytes]] | None = None

    # -- what a transport supplies ------------------------------------------------------------

    @abc.abstractmethod
    async def _read_exact(self, num_bytes: int) -> bytes:
        """Exactly `num_bytes`; raise `ConnectionClosed` if the stream ends or breaks first."""

    @abc.abstractmethod
    async def _read_some(self, max_bytes: int) -> bytes:
        """Up to `max_bytes` (at least one); b"" at end-of-stream; `ConnectionClosed` if broken."""

    @abc.abstractmethod
    async def _write(self, chunks: list[bytes]) -> None:
        """Write the chunks in order; raise `ConnectionClosed` if the stream is broken."""

    @abc.abstractmethod
    async def _finish_sending(self) -> None:
        """Signal end-of-stream to the peer (it reads EOF after the last frame)."""

    @abc.abstractmethod
    def _release(self) -> None:
        """Drop the connection now (synchronous, so it also runs inside a cancelled task); must
        not raise. Pending reads on it end with `ConnectionClosed`."""

    @property
    @abc.abstractmethod
    def peer(self) -> str:
        """Who is on the other end (an iroh endpoint id, a TCP host:port)."""

    # -- the interface ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    async def send(self, header: dict[str, Any], payload: bytes = b"") -> None:
        """Send one frame. A header that cannot be framed raises FrameError before any byte is sent.

        Cancellation-safe: a frame whose send() is abandoned half-way is still written whole.
        """
        payload_bytes = memoryview(payload).nbytes
        prefix_and_header = encode_prefix_and_header(header, payload_bytes, self.limits)
        if self._closed:
            raise ConnectionClosed("this side closed the channel")
        if payload_bytes <= SMALL_FRAME_BYTES:
            # One write per small frame: each write is a round trip through iroh's FFI.
            chunks = [prefix_and_header + bytes(payload)] if payload_bytes else [prefix_and_header]
        else:
            chunks = [prefix_and_header, payload]  # the payload goes out as it is, uncopied
        async with self._send_lock:
            if self._writing is not None:
                await asyncio.shield(self._writing)  # the rest of a frame an abandoned send() started
            # Shielded: a caller that gives up half-way must not leave half a frame on the stream.
            self._writing = asyncio.ensure_future(self._write(chunks))
            self._writing.add_done_callback(_retrieve_outcome)
            await asyncio.shield(self._writing)
            self._writing = None

    async def recv(self) -> tuple[dict[str, Any], bytes]:
        """The next frame as (header, payload).

        Cancellation-safe: when the caller gives up (a timeout, a cancelled task) in the middle of
        a frame, the frame is still read whole and handed to the next `recv`.
        """
        if self._closed:
            raise ConnectionClosed("this side closed the channel")
        async with self._recv_lock:
            if self._reading is None:
                self._reading = asyncio.ensure_future(self._read_frame())
                self._reading.add_done_callback(_retrieve_outcome)
            reading = self._reading
            try:
                return await asyncio.shield(reading)
            finally:
                if reading.done():
                    self._reading = None

    async def frames(self, on_bad_frame: Callable[[FrameError], Awaitable[None]] | None = None, *,
                     first_frame_s: float | None = None, idle_s: float | None = None
                     ) -> AsyncIterator[tuple[dict[str, Any], bytes]]:
        """The frames the peer sends, until it goes, sends one that breaks the stream, or is silent
        longer than `first_frame_s` before its first frame / `idle_s` between frames (None: no limit).

        Every bad frame goes to `on_bad_frame` first; after a recoverable one (consumed whole)
        reading goes on, after an unrecoverable one (the channel is closed) the iteration ends.
        """
        wait_s = first_frame_s
        while True:
            try:
                frame = await asyncio.wait_for(self.recv(), wait_s)
            except ConnectionClosed:
                return
            except TimeoutError:                # a silent peer must not hold a slot for ever
                return
            except FrameError as exc:
                if on_bad_frame is not None:
                    await on_bad_frame(exc)
                if not exc.recoverable:
                    return
                continue
            wait_s = idle_s
            yield frame

    async def close(self) -> None:
        """Stop using the channel: finish sending and release the connection once the peer is done.

        Returns at once. The connection lingers in the background (up to `LINGER_S`) until the
        peer's end-of-stream arrives, so frames this side sent are not cut off by a teardown before
        the peer has read them; frames that arrive meanwhile are dropped.
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self._writing is not None:
                await asyncio.wait([self._writing])
            await self._finish_sending()
        except (ConnectionClosed, OSError):
            self._release()
            return
        if self._peer_finished.is_set():
            self._release()
            return
        task = asyncio.ensure_future(self._linger())
        _LINGERING.add(task)
        task.add_done_callback(_LINGERING.discard)

    async def __aenter__(self) -> Channel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(peer={self.peer!r}, closed={self._closed})"

    # -- helpers ------------------------------------------------------------------------------

    async def _read_frame(self) -> tuple[dict[str, Any], bytes]:
        try:
            prefix = await self._read_exact(PREFIX_BYTES)
        except ConnectionClosed:
            self._peer_finished.set()
            raise
        try:
            header_bytes, payload_bytes = parse_prefix(prefix, self.limits)
        except FrameError:
            # The stream position is lost: nothing after this can be trusted.
            await self._abort()
            raise
        if payload_bytes <= SMALL_FRAME_BYTES:
            # One read for header and payload: each read is a round trip through iroh's FFI.
            rest = await self._read_rest(
                "payload" if payload_bytes else "header", header_bytes + payload_bytes
            )
            header_json, payload = rest[:header_bytes], rest[header_bytes:]
        else:
            header_json = await self._read_rest("header", header_bytes)
            payload = await self._read_rest("payload", payload_bytes)
        # Both parts are consumed before the header is judged, so a bad header costs one frame.
        return decode_header(header_json, payload_bytes, self.allowed_types), payload

    async def _read_rest(self, field: str, num_bytes: int) -> bytes:
        deadline_s = self.limits.read_deadline_s(num_bytes)
        try:
            if deadline_s is None:
                return await self._read_exact(num_bytes)
            return await asyncio.wait_for(self._read_exact(num_bytes), deadline_s)
        except TimeoutError:
            # A sender stalling inside a frame would pin its buffer: drop the connection instead.
            await self._abort()
            raise FrameError(field, num_bytes, f"stalled: not received within {deadline_s:.0f} s",
                             recoverable=False) from None
        except ConnectionClosed as exc:
            await self._abort()
            raise FrameError(
                field, num_bytes, f"truncated: stream ended inside a frame ({exc.reason})", recoverable=False
            ) from None

    async def _linger(self) -> None:
        try:
            await asyncio.wait_for(self._drain_until_eof(), LINGER_S)
        except (ConnectionClosed, TimeoutError, OSError):
            pass
        finally:  # also when the event loop shuts down and cancels this task
            self._release()

    async def _drain_until_eof(self) -> None:
        async with self._recv_lock:  # after any recv() another task is still inside
            if self._reading is not None:  # a frame an abandoned recv() started
                await asyncio.wait([self._reading])
                self._reading = None
            if not self._peer_finished.is_set():
                while await self._read_some(64 * 1024):
                    pass
                self._peer_finished.set()

    async def _abort(self) -> None:
        self._closed = True
        self._release()


class Node(abc.ABC):
    """One local transport endpoint: listens at `address` and dials other nodes' addresses.

    Subclasses hand each channel that passed the hello to `_offer`, and call `_stop_accepting`
    when closing; `accept` is shared.
    """

    def __init__(self) -> None:
        # None is the "closed" sentinel that wakes every task waiting in accept().
        self._incoming: asyncio.Queue[Channel | None] = asyncio.Queue()
        self._accepting = True

    @property
    @abc.abstractmethod
    def address(self) -> str:
        """What a peer passes to its own `connect` to reach this node."""

    async def accept(self) -> Channel:
        """The next channel a peer opened to this node (waits for one); `ConnectionClosed` once
        the node is closed, also for tasks already waiting."""
        channel = await self._incoming.get() if self._accepting else None
        if channel is None:
            self._incoming.put_nowait(None)
            raise ConnectionClosed("node is closed")
        return channel

    @abc.abstractmethod
    async def connect(self, address: str, timeout_s: float = 10.0) -> Channel:
        """Open a channel to the node at `address`; `InvalidInput` for a malformed address,
        `ConnectionClosed` when it cannot be reached within `timeout_s`."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop listening and release the endpoint; open channels from this node stop working."""

    def _offer(self, channel: Channel) -> None:
        if self._accepting:
            self._incoming.put_nowait(channel)
        else:
            channel._release()

    def _stop_accepting(self) -> None:
        self._accepting = False
        while not self._incoming.empty():
            channel = self._incoming.get_nowait()
            if channel is not None:
                channel._release()
        self._incoming.put_nowait(None)

    async def __aenter__(self) -> Node:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

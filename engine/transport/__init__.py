"""Frames and channels between Prismn peers: iroh (QUIC, P2P) and plain TCP.

Frames (engine.transport.frames) — the wire unit, never pickled::

    u32 header_bytes | u64 payload_bytes | UTF-8 JSON header | raw payload     (big-endian)

    header = {"type": "activations", "payload_bytes": N, "dtype": "bfloat16", "shape": [1, 7, 576],
              ...free JSON fields ("session", "positions", ...)}

    encode_frame(header, payload=b"", limits=DEFAULT_LIMITS) -> bytes
    decode_frame(frame, limits=..., allowed_types=None) -> (header, payload)
    tensor_to_frame(type, tensor, **fields) -> (header, payload)     # any DTYPES, bfloat16 included
    frame_to_tensor(header, payload) -> torch.Tensor                  # fresh writable CPU tensor
    FrameLimits(max_header_bytes=64 KiB, max_payload_bytes=256 MiB);  DTYPES: wire name -> torch.dtype
    FrameError(field, value, reason, recoverable=True)                # an engine.errors.InvalidInput

Channels (engine.transport.base.Channel), the same for every transport::

    await channel.send(header, payload=b"")    # FrameError before sending if the header is bad
    header, payload = await channel.recv()     # FrameError (bad frame) / ConnectionClosed (peer gone)
    await channel.close()                      # also: async with channel: ...
    channel.peer                               # iroh endpoint id or TCP "host:port"

    A bad frame whose lengths are within limits (bad JSON, unknown type or dtype, shape vs payload
    mismatch) is consumed whole: recv raises FrameError(recoverable=True) and the channel keeps
    working. A length over the limits, or a stream that ends inside a frame, raises
    FrameError(recoverable=False) and the channel is closed (the next recv: ConnectionClosed).

Nodes (engine.transport.base.Node) listen and dial::

    node = await start_node("iroh", bind_addr="127.0.0.1:0")  # or "tcp"; IrohNode.start / TcpNode.start
    node.address                                   # give this to a peer: iroh ticket / "host:port"
    channel = await node.accept()                  # next channel a peer opened to us
    channel = await other_node.connect(node.address)
    await node.close()                             # also: async with node: ...

    IrohNode.start(bind_addr, secret_key=None, relay=False, limits, allowed_types): offline-safe by
    default (minimal preset, relays off, direct addresses in the ticket; ALPN b"prismn/1").
    IrohNode also has .endpoint_id and .bound_sockets (["127.0.0.1:port", ...]); closing a node
    frees its port at once. All iroh nodes of a process share one asyncio loop.
    `tcp_connect(address)` dials without listening. Importing this package applies the checked
    iroh speed fix (engine.transport.iroh_fix).

Behaviour worth knowing:
    - send() applies backpressure. On iroh a frame larger than the peer's stream window (~1.25 MB)
      completes only while the peer is reading, so run the sender and the receiver concurrently.
    - send() and recv() are cancellation-safe: wrapping them in asyncio.wait_for never leaves half
      a frame behind; an abandoned frame is finished by (or handed to) the next call.
    - close() returns at once; the connection lingers in the background (<= 10 s) until the peer
      has read to the end, so frames sent just before close() are not lost.
    - Received headers include "payload_bytes". Payloads come back as bytes.
    - Figures on the shared 2-core dev box (benchmarks/bench_transport.py, loopback, 16 MiB
      frames, both ends in one process): TCP ~900-1400 MB/s; iroh ~470-600 MB/s while both cores
      are free (iroh/TCP 0.49-0.65, median 0.50), ~300 MB/s (0.2-0.3) while another process
      holds a core; 10 MB/s without the buffer fix. Receiver in a child process: iroh ~280-410,
      0.28-0.33 (two processes' QUIC threads share the two cores). Small-frame round trip TCP
      ~0.09 ms, iroh ~0.35 ms. iroh is CPU-bound: ~3.1-3.4 ms of CPU per MiB (both ends)
      against TCP's ~1.0, so on one free core it cannot pass ~0.3x TCP. Per MiB: ~0.9 ms is the
      compiled bindings converting Vec<u8> one byte at a time on the event-loop thread (0.6
      lifting what is written, 0.3 lowering what is read), ~1.4 ms is QUIC on iroh's threads
      (AES-GCM, packets, UDP syscalls), the rest Python and copies. Bytes cross the FFI in 256
      KiB pieces (iroh_channel.PIECE_BYTES): that overlaps the conversion with QUIC's work and
      keeps data in cache, twice the throughput of whole-payload calls (~260-300 MB/s) and
      20-30% less CPU per MiB.

A peer for manual and cross-process checks: `python -m engine.transport.echo --transport iroh`
prints its address, then echoes every frame back.
"""

from __future__ import annotations

from collections.abc import Collection

from engine.errors import InvalidInput
from engine.transport.base import Channel, ConnectionClosed, Node
from engine.transport.frames import (
    DEFAULT_LIMITS,
    DTYPES,
    FrameError,
    FrameLimits,
    decode_frame,
    decode_header,
    encode_frame,
    frame_to_tensor,
    tensor_to_frame,
)
from engine.transport.iroh_channel import ALPN, IrohChannel, IrohNode
from engine.transport.tcp_channel import TcpChannel, TcpNode, tcp_connect

TRANSPORTS = ("iroh", "tcp")


async def start_node(
    transport: str,
    bind_addr: str = "127.0.0.1:0",
    limits: FrameLimits = DEFAULT_LIMITS,
    allowed_types: Collection[str] | None = None,
) -> Node:
    """A listening node of the named transport ("iroh" or "tcp") bound at `bind_addr`."""
    if transport == "iroh":
        return await IrohNode.start(bind_addr, limits=limits, allowed_types=allowed_types)
    if transport == "tcp":
        return await TcpNode.start(bind_addr, limits=limits, allowed_types=allowed_types)
    raise InvalidInput("transport", transport, f"expected one of {TRANSPORTS}")


__all__ = [
    "ALPN",
    "DEFAULT_LIMITS",
    "DTYPES",
    "TRANSPORTS",
    "Channel",
    "ConnectionClosed",
    "FrameError",
    "FrameLimits",
    "IrohChannel",
    "IrohNode",
    "Node",
    "TcpChannel",
    "TcpNode",
    "decode_frame",
    "decode_header",
    "encode_frame",
    "frame_to_tensor",
    "start_node",
    "tcp_connect",
    "tensor_to_frame",
]

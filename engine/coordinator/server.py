"""Start a coordinator on a store: open the store, bind the endpoint with the persisted identity,
and hand out the ticket. Shared by the headless command and the GUI's embedded coordinator."""

from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import dataclass
from typing import Any

from engine.coordinator.orchestrator import Orchestrator
from engine.coordinator.service import Coordinator
from engine.errors import InvalidInput
from engine.protocol.auth import SigningKey
from engine.protocol.messages import FRAME_LIMITS
from engine.protocol.ticket import Ticket, identity_dir, load_identity, save_identity
from engine.store import Store, open_store
from engine.transport.base import Node
from engine.transport.iroh_channel import IrohNode
from engine.transport.tcp_channel import TcpNode

log = logging.getLogger("prismn.coordinator")

TRANSPORTS = ("iroh", "tcp")
REBIND_TRIES = 20            # x 0.1 s: a coordinator that just stopped may hold its port a moment


@dataclass
class Running:
    coordinator: Coordinator
    orchestrator: Orchestrator
    store: Store
    ticket: str
    replacement: Any = None           # engine.coordinator.replacement.Replacement, once enabled

    async def close(self) -> None:
        if self.replacement is not None:
            await self.replacement.stop()
        await self.coordinator.close()
        self.store.close()


async def start(store_spec: str | None = None, *, transport: str = "iroh", bind_host: str = "0.0.0.0",
                heartbeat_s: float = 1.0) -> Running:
    """A serving coordinator; the ticket stays the same across restarts on the same store."""
    if transport not in TRANSPORTS:
        raise InvalidInput("transport", transport, f"expected one of {TRANSPORTS}")
    folder = identity_dir(store_spec)
    identity = load_identity(folder)
    node = await _bind(transport, bind_host, identity.port, bytes.fromhex(identity.secret_key_hex))
    port = int(node.address.rsplit(":", 1)[1]) if transport == "tcp" else _iroh_port(node)
    if port != identity.port:
        save_identity(folder, identity.with_port(port))
    store = open_store(store_spec)
    try:
        coordinator = Coordinator(node, store, identity.join_secret, heartbeat_s=heartbeat_s, state_dir=folder,
                                  signing_key=SigningKey(bytes.fromhex(identity.secret_key_hex)))
        await coordinator.start()
    except BaseException:
        await node.close()
        store.close()
        raise
    ticket = Ticket(node.address, identity.join_secret, coordinator.signing_key.public_hex).encode()
    return Running(coordinator, Orchestrator(coordinator), store, ticket)


async def _bind(transport: str, host: str, port: int, secret_key: bytes) -> Node:
    """Bind the port of the last run (so old tickets stay valid), else any free port."""
    for attempt in range(REBIND_TRIES):
        try:
            return await _start_node(transport, host, port, secret_key)
        except (InvalidInput, OSError) as exc:
            if not port:
                raise
            if attempt == REBIND_TRIES - 1:
                log.warning("cannot bind port %d again (%s): the ticket changes", port, exc)
                return await _start_node(transport, host, 0, secret_key)
            # The previous coordinator (this process's, in the GUI) may hold the port until its
            # endpoint, kept by reference cycles of closed channels, is collected; another process
            # may still be exiting.
            gc.collect()
            await asyncio.sleep(0.1)
    raise AssertionError("unreachable")


async def _start_node(transport: str, host: str, port: int, secret_key: bytes) -> Node:
    bind_addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if transport == "tcp":
        return await TcpNode.start(bind_addr, limits=FRAME_LIMITS)
    return await IrohNode.start(bind_addr, secret_key=secret_key, limits=FRAME_LIMITS)


def _iroh_port(node: IrohNode) -> int:
    """The UDP port the iroh endpoint bound (first socket), kept so the next start reuses it."""
    sockets = node.bound_sockets
    return int(sockets[0].rsplit(":", 1)[1]) if sockets else 0

"""Who is on the other end of a join: both ends prove themselves over fresh nonces (protocol 2).

    runner -> coordinator   join_hello {protocol, nonce}          nonce_r: 32 random bytes, hex
    coordinator -> runner   challenge  {nonce, signature}         Ed25519 by the coordinator's key
                                                                  over (nonce_r, nonce_c)
    runner -> coordinator   join {..., key, proof, signature}     proof: HMAC-SHA256(join secret,
                                                                  transcript); signature: by the
                                                                  runner's own key over it
    coordinator -> runner   welcome | refused

The transcript binds both nonces, the peer id and the runner's public key, so:
- the join secret never crosses the wire (an eavesdropper on a TCP link learns no secret);
- a recorded join cannot be replayed (the coordinator's nonce is fresh on every connection);
- a runner checks the coordinator's signature against the key the ticket carries, so over a TCP
  ticket it knows it talks to the real coordinator (iroh's QUIC already checks the endpoint id);
- the coordinator binds each peer id to the runner key that first joined with it (`PeerKeys`):
  another holder of the join secret cannot take over a peer id.

Keys are Ed25519 (iroh's own, already a dependency: `iroh.SecretKey.sign`, `EndpointId.verify`).
A runner keeps its key for its whole life, and in a file (owner-only) when it has a fixed id, so it
can rejoin under that id after a restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
from pathlib import Path
from typing import Any

import iroh

from engine.errors import InvalidInput, PrismnError
from engine.paths import user_data_dir
from engine.protocol.ticket import Ticket
from engine.transport.base import Channel

log = logging.getLogger("prismn.auth")

NONCE_HEX_CHARS = 64
KEY_HEX_CHARS = 64
SIGNATURE_HEX_CHARS = 128
PROOF_HEX_CHARS = 64
HEX = re.compile(r"^[0-9a-f]*$")
PEER_KEYS_FILE = "coordinator_peer_keys.jsonl"
MAX_BOUND_PEERS = 100_000          # bounds the bindings file a flood of distinct ids could grow


def new_nonce() -> str:
    return secrets.token_hex(NONCE_HEX_CHARS // 2)


def is_hex(value: object, chars: int) -> bool:
    return isinstance(value, str) and len(value) == chars and bool(HEX.match(value))


def coordinator_statement(runner_nonce: str, coordinator_nonce: str) -> bytes:
    """What the coordinator signs: it holds the ticket's key, now (the runner chose its nonce)."""
    return f"prismn-coordinator/2|{runner_nonce}|{coordinator_nonce}".encode()


def join_transcript(runner_nonce: str, coordinator_nonce: str, peer_id: str, key_hex: str) -> bytes:
    return f"prismn-join/2|{runner_nonce}|{coordinator_nonce}|{peer_id}|{key_hex}".encode()


def join_proof(join_secret: str, transcript: bytes) -> str:
    """Proves knowledge of the join secret without sending it."""
    return hmac.new(join_secret.encode(), transcript, hashlib.sha256).hexdigest()


def proof_matches(join_secret: str, transcript: bytes, proof: str) -> bool:
    return hmac.compare_digest(join_proof(join_secret, transcript), proof)


class SigningKey:
    """An Ed25519 key pair (iroh's)."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise InvalidInput("key", len(secret), "expected a 32-byte Ed25519 secret key")
        self._key = iroh.SecretKey.from_bytes(secret)
        self.public_hex = bytes(self._key.public().to_bytes()).hex()

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(secrets.token_bytes(32))

    @classmethod
    def load_or_create(cls, path: Path) -> SigningKey:
        """The key in `path` (hex, owner-only), created on first use; two processes starting at
        once end up with the same key (the first file wins, without being overwritten)."""
        if not path.exists():
            write_private(path, secrets.token_bytes(32).hex(), replace=False)
        text = path.read_text().strip()
        if not is_hex(text, 64):
            raise InvalidInput(str(path), "...", "expected a 64-character hex key")
        return cls(bytes.fromhex(text))

    def sign(self, message: bytes) -> str:
        return bytes(self._key.sign(message).to_bytes()).hex()


def verify(public_hex: str, message: bytes, signature_hex: str) -> bool:
    """True when `signature_hex` is `public_hex`'s Ed25519 signature of `message`."""
    if not is_hex(public_hex, KEY_HEX_CHARS) or not is_hex(signature_hex, SIGNATURE_HEX_CHARS):
        return False
    try:
        public = iroh.EndpointId.from_bytes(bytes.fromhex(public_hex))
        public.verify(message, iroh.Signature.from_bytes(bytes.fromhex(signature_hex)))
    except iroh.IrohError:
        return False
    return True


def public_key_of(secret_key_hex: str) -> str:
    return SigningKey(bytes.fromhex(secret_key_hex)).public_hex


def runner_key_path(peer_id: str) -> Path:
    """Where a runner with a fixed id keeps its key (the id is already limited to [A-Za-z0-9._:-])."""
    return user_data_dir() / "runner-keys" / f"{peer_id.replace(':', '_')}.key"


def write_private(path: Path, text: str, replace: bool = True) -> None:
    """Write `text` readable by the owner only, atomically (folder 0700); with `replace` False an
    existing file is kept."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    if replace:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)


class PeerKeys:
    """peer id -> the runner key that first joined with it, kept beside the store when `path` is set:
    one JSON line per binding, appended (a join costs O(1), not a rewrite of every binding).

    Public keys only (nothing secret), but written owner-only like the rest of the coordinator's state.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._keys: dict[str, str] = {}
        if path is not None and path.exists():
            try:
                lines = path.read_text().splitlines()
            except OSError:
                log.warning("ignoring an unreadable %s", path)
                lines = []
            for line in lines:
                try:
                    entry = json.loads(line)
                    peer_id, key = entry["peer_id"], entry["key"]
                except (ValueError, TypeError, KeyError):
                    continue                        # a line cut by a crash: the rest still count
                if isinstance(peer_id, str) and is_hex(key, KEY_HEX_CHARS):
                    self._keys.setdefault(peer_id, key)        # the first binding wins

    def key_of(self, peer_id: str) -> str | None:
        return self._keys.get(peer_id)

    def admit(self, peer_id: str, key_hex: str) -> bool:
        """True when `key_hex` may use `peer_id`: it is the bound key, or the id was free (now bound)."""
        bound = self._keys.get(peer_id)
        if bound is not None:
            return hmac.compare_digest(bound, key_hex)
        if len(self._keys) >= MAX_BOUND_PEERS:
            return False
        self._keys[peer_id] = key_hex
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a") as handle:
                handle.write(json.dumps({"peer_id": peer_id, "key": key_hex}) + "\n")
        return True


# ---- the handshake on a channel ---------------------------------------------------------------

class NotTheCoordinator(PrismnError):
    """The other end could not prove it holds the ticket's coordinator key."""


async def runner_handshake(channel: Channel, ticket: Ticket, key: SigningKey, join: dict[str, Any],
                           timeout_s: float) -> dict[str, Any]:
    """Run the runner's side; returns the coordinator's validated welcome or refused message.

    `join` is the join message without its proof fields (type, protocol, peer_id, metrics...).
    """
    from engine.protocol.messages import PROTOCOL_VERSION, validate

    runner_nonce = new_nonce()
    await channel.send({"type": "join_hello", "protocol": PROTOCOL_VERSION, "nonce": runner_nonce})
    header, payload = await asyncio.wait_for(channel.recv(), timeout_s)
    msg = validate(header, payload, frozenset({"challenge", "refused"}))
    if msg["type"] == "refused":
        return msg
    if ticket.key and not verify(ticket.key, coordinator_statement(runner_nonce, msg["nonce"]), msg["signature"]):
        raise NotTheCoordinator(f"{channel.peer} did not prove it holds the ticket's coordinator key")
    transcript = join_transcript(runner_nonce, msg["nonce"], join["peer_id"], key.public_hex)
    await channel.send({**join, "key": key.public_hex, "proof": join_proof(ticket.secret, transcript),
                        "signature": key.sign(transcript)})
    header, payload = await asyncio.wait_for(channel.recv(), timeout_s)
    return validate(header, payload, frozenset({"welcome", "refused"}))


async def coordinator_handshake(channel: Channel, join_secret: str, key: SigningKey, peer_keys: PeerKeys,
                                timeout_s: float) -> dict[str, Any]:
    """Run the coordinator's side up to an admitted join message; raises `Refusal` (say it, hang up)."""
    from engine.protocol.messages import PROTOCOL_VERSION, validate

    try:
        header, payload = await asyncio.wait_for(channel.recv(), timeout_s)
        hello = validate(header, payload, frozenset({"join_hello"}))
    except (TimeoutError, InvalidInput) as exc:       # FrameError included
        raise Refusal(f"expected a join_hello message first: {exc}") from None
    if hello["protocol"] != PROTOCOL_VERSION:
        raise Refusal(f"protocol {hello['protocol']} unsupported; this coordinator speaks {PROTOCOL_VERSION}")
    nonce = new_nonce()
    await channel.send({"type": "challenge", "nonce": nonce,
                        "signature": key.sign(coordinator_statement(hello["nonce"], nonce))})
    try:
        header, payload = await asyncio.wait_for(channel.recv(), timeout_s)
        msg = validate(header, payload, frozenset({"join"}))
    except (TimeoutError, InvalidInput) as exc:
        raise Refusal(f"expected a join message: {exc}") from None
    transcript = join_transcript(hello["nonce"], nonce, msg["peer_id"], msg["key"])
    if not proof_matches(join_secret, transcript, msg["proof"]):
        log.warning("refused %s (%s): wrong join secret", msg["peer_id"], channel.peer)
        raise Refusal("wrong join secret")
    if not verify(msg["key"], transcript, msg["signature"]):
        raise Refusal("the join's signature does not match its key")
    if not peer_keys.admit(msg["peer_id"], msg["key"]):
        log.warning("refused %s (%s): the id is bound to another runner's key", msg["peer_id"], channel.peer)
        raise Refusal(f"peer id {msg['peer_id']!r} belongs to another runner (bound to its key); "
                      "join under another id")
    return msg


class Refusal(PrismnError):
    """Why a connection was not admitted: sent to it in a `refused` message."""

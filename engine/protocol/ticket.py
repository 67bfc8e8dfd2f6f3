"""The join ticket (one copy-pasteable string) and the coordinator identity that keeps it valid.

A ticket is ``prismn1.<base64url(JSON {"address": transport address, "secret": join secret,
"key": the coordinator's Ed25519 public key, hex})>``. With the key a runner checks, on any transport,
that it talks to the coordinator that printed the ticket (engine.protocol.auth); a TCP ticket
without one is refused (iroh's endpoint address already pins the coordinator's key).
The identity (iroh secret key, join secret, bound port) is persisted as JSON next to the store (or
in the user data dir), readable by the owner only, so a restarted coordinator hands out the same
ticket and runners holding it reconnect by themselves.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InvalidInput
from engine.paths import user_data_dir

TICKET_PREFIX = "prismn1."
MAX_TICKET_CHARS = 8192
IDENTITY_FILE = "coordinator_identity.json"


@dataclass(frozen=True)
class Ticket:
    address: str        # the transport's address string (an iroh endpoint ticket, or host:port for TCP)
    secret: str         # join secret: proves a runner may join (never sent, see engine.protocol.auth)
    key: str = ""       # the coordinator's public key (hex); "" only in tickets from before protocol 2

    def encode(self) -> str:
        fields = {"address": self.address, "secret": self.secret, **({"key": self.key} if self.key else {})}
        raw = json.dumps(fields, separators=(",", ":"))
        return TICKET_PREFIX + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_ticket(text: str) -> Ticket:
    """Parse a ticket pasted by a user; raises InvalidInput naming `ticket`."""
    if not isinstance(text, str):
        raise InvalidInput("ticket", type(text).__name__, "expected a string")
    text = text.strip()
    if len(text) > MAX_TICKET_CHARS or not text.startswith(TICKET_PREFIX):
        raise InvalidInput("ticket", text[:40], f"expected a string starting with {TICKET_PREFIX!r}")
    body = text[len(TICKET_PREFIX):]
    try:
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("ticket", text[:40], f"not a valid ticket encoding ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidInput("ticket", text[:40], "expected an encoded JSON object")
    for key in ("address", "secret"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise InvalidInput(f"ticket.{key}", data.get(key), "expected a non-empty string")
    key = data.get("key", "")
    if key and not (isinstance(key, str) and len(key) == 64 and all(c in "0123456789abcdef" for c in key)):
        raise InvalidInput("ticket.key", str(key)[:80], "expected the coordinator's key as 64 hex digits")
    if not key and _is_host_port(data["address"]):
        raise InvalidInput("ticket.key", None, "a TCP ticket must carry the coordinator's key (a ticket from an "
                                               "older coordinator: copy the ticket it prints now)")
    return Ticket(address=data["address"], secret=data["secret"], key=key)


def _is_host_port(address: str) -> bool:
    from engine.transport.tcp_channel import parse_host_port

    try:
        parse_host_port(address)
    except InvalidInput:
        return False
    return True


@dataclass(frozen=True)
class Identity:
    join_secret: str
    secret_key_hex: str         # the iroh endpoint's secret key: the endpoint id (and ticket) derive from it
    port: int                   # 0 until the first bind has chosen one

    def with_port(self, port: int) -> Identity:
        return Identity(self.join_secret, self.secret_key_hex, port)


def identity_dir(store_spec: str | None) -> Path:
    """The folder beside a SQLite store file, else the per-user data dir."""
    if store_spec and store_spec.startswith("sqlite:"):
        return Path(store_spec[len("sqlite:"):]).expanduser().resolve().parent
    return user_data_dir()


def load_identity(folder: Path) -> Identity:
    """Read the persisted identity, or create (and save) a fresh one."""
    path = folder / IDENTITY_FILE
    if path.exists():
        try:
            data = json.loads(path.read_text())
            identity = Identity(str(data["join_secret"]), str(data["secret_key_hex"]), int(data["port"]))
            bytes.fromhex(identity.secret_key_hex)
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(str(path), "...", f"unreadable coordinator identity ({exc})") from None
        if identity.join_secret and len(identity.secret_key_hex) == 64 and 0 <= identity.port < 65536:
            return identity
        raise InvalidInput(str(path), "...", "coordinator identity has empty or malformed values")
    identity = Identity(join_secret=secrets.token_urlsafe(24), secret_key_hex=secrets.token_bytes(32).hex(),
                        port=0)
    save_identity(folder, identity)
    return identity


def save_identity(folder: Path, identity: Identity) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / IDENTITY_FILE
    tmp = path.with_suffix(".tmp")
    # Owner-only from creation: the file holds the join secret and the endpoint's private key.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"join_secret": identity.join_secret, "secret_key_hex": identity.secret_key_hex,
                   "port": identity.port}, handle)
    os.replace(tmp, path)

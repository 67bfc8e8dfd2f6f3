"""One checked fix to the iroh Python bindings: copy bytes into Rust buffers in one memmove.

The uniffi-generated `_UniffiRustBufferBuilder.write` (iroh 1.2.0) copies a `bytes` argument into
the Rust buffer one byte per Python loop step, which caps every `SendStream.write_all` at about
10 MB/s. This module swaps in a writer that does the same thing with one `ctypes.memmove`.

The patch is applied only when the installed bindings are exactly the version it was verified
against AND the original `write` and `_reserve` still read exactly as below; otherwise the bindings
are left alone and a warning is logged (slower, still correct). tests/engine/transport/
test_iroh_fix.py checks that both writers build identical buffers.

The other direction needs no fix: `_UniffiRustBufferStream.read` slices a `POINTER(c_char)`, which
ctypes turns into bytes with one memcpy (16 MiB in 256 KiB reads: ~0.3 ms). What remains per byte
is inside the compiled library (Vec<u8> lift and lower, ~0.9 ms per MiB), out of reach from here.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import inspect
import logging
import textwrap
from collections.abc import Callable

log = logging.getLogger(__name__)

VERIFIED_IROH_VERSION = "1.2.0"

# The generated code this fix replaces / relies on, verbatim from iroh 1.2.0's iroh_ffi.py.
EXPECTED_WRITE_SOURCE = """\
def write(self, value):
    with self._reserve(len(value)):
        for i, byte in enumerate(value):
            self.rbuf.data[self.rbuf.len + i] = byte
"""
EXPECTED_RESERVE_SOURCE = """\
@contextlib.contextmanager
def _reserve(self, num_bytes):
    if self.rbuf.len + num_bytes > self.rbuf.capacity:
        self.rbuf = _UniffiRustBuffer.reserve(self.rbuf, num_bytes)
    yield None
    self.rbuf.len += num_bytes
"""

_original_write: Callable[..., None] | None = None


def _fast_write(self, value) -> None:  # noqa: ANN001 - signature of the generated method
    view = memoryview(value)
    if view.ndim != 1 or view.itemsize != 1 or not view.c_contiguous:
        assert _original_write is not None
        _original_write(self, value)
        return
    num_bytes = view.nbytes
    with self._reserve(num_bytes):
        if num_bytes:
            # _reserve grew the buffer to hold rbuf.len + num_bytes and bumps rbuf.len on exit.
            source = value if isinstance(value, bytes) else view.tobytes()
            destination = ctypes.cast(self.rbuf.data, ctypes.c_void_p).value + self.rbuf.len
            ctypes.memmove(destination, source, num_bytes)


def _normalised_source(function: Callable[..., object]) -> str | None:
    try:
        return textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):
        return None


def _why_not_applicable() -> str | None:
    """None when the bindings are exactly what the fix was verified against, else the reason."""
    try:
        version = importlib.metadata.version("iroh")
    except importlib.metadata.PackageNotFoundError:
        return "package metadata for 'iroh' not found"
    if version != VERIFIED_IROH_VERSION:
        return f"iroh {version} installed, fix verified only for {VERIFIED_IROH_VERSION}"
    from iroh import iroh_ffi

    builder = getattr(iroh_ffi, "_UniffiRustBufferBuilder", None)
    if builder is None:
        return "iroh_ffi._UniffiRustBufferBuilder not found"
    generated_write = _original_write if _original_write is not None else builder.write
    if _normalised_source(generated_write) != EXPECTED_WRITE_SOURCE:
        return "_UniffiRustBufferBuilder.write differs from the verified source"
    if _normalised_source(builder._reserve.__wrapped__) != EXPECTED_RESERVE_SOURCE:
        return "_UniffiRustBufferBuilder._reserve differs from the verified source"
    return None


def apply() -> bool:
    """Install the fast writer if the bindings are the verified ones; True when it is active."""
    global _original_write
    if is_applied():
        return True
    reason = _why_not_applicable()
    if reason is not None:
        log.warning("iroh bindings left unpatched (sends stay slow, ~10 MB/s): %s", reason)
        return False
    from iroh import iroh_ffi

    _original_write = iroh_ffi._UniffiRustBufferBuilder.write
    iroh_ffi._UniffiRustBufferBuilder.write = _fast_write
    return True


def remove() -> None:
    """Put the generated writer back (benchmarks and tests compare both)."""
    global _original_write
    if _original_write is None:
        return
    from iroh import iroh_ffi

    iroh_ffi._UniffiRustBufferBuilder.write = _original_write
    _original_write = None


def is_applied() -> bool:
    from iroh import iroh_ffi

    return iroh_ffi._UniffiRustBufferBuilder.write is _fast_write

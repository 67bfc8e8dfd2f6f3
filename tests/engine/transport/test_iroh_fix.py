"""The iroh buffer fix writes exactly what the generated writer writes, only faster, and only
patches the bindings it was verified against."""

from __future__ import annotations

import asyncio
import os

import pytest
from iroh import iroh_ffi

from engine.transport import iroh_fix, start_node

pytestmark = pytest.mark.timeout(60)


def build_buffer(value: object) -> tuple[int, bytes]:
    """(len, bytes) of a Rust buffer holding a length, `value`, and a trailing marker byte."""
    builder = iroh_ffi._UniffiRustBufferBuilder()
    try:
        builder.write_i32(len(memoryview(value).cast("B")))  # type: ignore[arg-type]
        builder.write(value)
        builder.write_u8(0xA5)
        return builder.rbuf.len, bytes(builder.rbuf.data[0 : builder.rbuf.len])
    finally:
        builder.discard()


@pytest.fixture
def unpatched_then_restored():
    was_applied = iroh_fix.is_applied()
    iroh_fix.remove()
    yield
    if was_applied:
        assert iroh_fix.apply()


@pytest.mark.parametrize("num_bytes", [0, 1, 15, 16, 17, 4097, 2**20 + 3])
def test_fast_writer_builds_the_same_buffer_as_the_generated_one(
    num_bytes: int, unpatched_then_restored
) -> None:
    data = os.urandom(num_bytes)
    original = build_buffer(data)
    assert iroh_fix.apply() and iroh_fix.is_applied()
    patched = build_buffer(data)
    assert patched == original
    assert patched[0] == 4 + num_bytes + 1 and patched[1][4 : 4 + num_bytes] == data


def test_fast_writer_accepts_other_byte_buffers(unpatched_then_restored) -> None:
    data = os.urandom(1000)
    originals = [build_buffer(bytearray(data)), build_buffer(memoryview(data))]
    assert iroh_fix.apply()
    assert [build_buffer(bytearray(data)), build_buffer(memoryview(data))] == originals


def test_apply_is_idempotent_and_remove_restores_the_generated_writer(unpatched_then_restored) -> None:
    generated = iroh_ffi._UniffiRustBufferBuilder.write
    assert iroh_fix.apply() and iroh_fix.apply()
    assert iroh_ffi._UniffiRustBufferBuilder.write is not generated
    iroh_fix.remove()
    assert iroh_ffi._UniffiRustBufferBuilder.write is generated


def test_other_iroh_versions_are_left_unpatched(unpatched_then_restored, monkeypatch, caplog) -> None:
    monkeypatch.setattr(iroh_fix, "VERIFIED_IROH_VERSION", "0.0.1")
    assert iroh_fix.apply() is False
    assert not iroh_fix.is_applied()
    assert "verified only for 0.0.1" in caplog.text


def test_changed_generated_code_is_left_unpatched(unpatched_then_restored, monkeypatch) -> None:
    def write(self, value):  # same job, different source: the guard must refuse it
        with self._reserve(len(value)):
            for index, byte in enumerate(bytes(value)):
                self.rbuf.data[self.rbuf.len + index] = byte

    monkeypatch.setattr(iroh_ffi._UniffiRustBufferBuilder, "write", write)
    assert iroh_fix.apply() is False
    assert iroh_ffi._UniffiRustBufferBuilder.write is write


def test_installed_bindings_are_the_verified_ones() -> None:
    assert iroh_fix._why_not_applicable() is None
    assert iroh_fix.is_applied()  # importing engine.transport applied it


def test_sixteen_mib_frame_crosses_iroh_intact_with_the_fix() -> None:
    async def scenario() -> None:
        async with await start_node("iroh") as server, await start_node("iroh") as client:
            to_server = await client.connect(server.address)
            to_client = await server.accept()
            blob = os.urandom(16 * 2**20)
            sending = asyncio.ensure_future(to_server.send({"type": "blob"}, blob))
            header, payload = await to_client.recv()
            await sending
            assert header["payload_bytes"] == len(blob) and payload == blob
            await to_server.close()
            await to_client.close()

    assert iroh_fix.is_applied()
    asyncio.run(scenario())

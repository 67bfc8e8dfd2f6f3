"""Three runner processes serve a real pipeline: hidden states go runner to runner over iroh (and TCP)
and the results equal the monolithic model's; bad frames are refused while the runners keep serving."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
import torch

from engine.generate import (
    assign_routes,
    greedy_generate,
    open_pipeline,
    pipeline_token,
    start_runners,
    stop_runners,
)
from engine.transport.base import HELLO
from engine.transport.frames import PREFIX, decode_frame, encode_frame, tensor_to_frame
from engine.transport.tcp_channel import parse_host_port
from tests.engine.runner.conftest import EOS, PROMPT_IDS

pytestmark = pytest.mark.slow
SPLIT = [(0, 2), (2, 4), (4, 6)]
NEW_TOKENS = 10


@pytest.fixture(scope="module")
def iroh_runners(tiny_llama):
    runners = start_runners(str(tiny_llama), SPLIT, "iroh", ready_timeout_s=120)
    yield runners
    stop_runners(runners)


@pytest.fixture(scope="module")
def tcp_runners(tiny_llama):
    runners = start_runners(str(tiny_llama), SPLIT, "tcp", ready_timeout_s=120)
    yield runners
    stop_runners(runners)


def expected(model):
    ids = torch.tensor([PROMPT_IDS])
    with torch.no_grad():
        logits = model(ids).logits
    tokens = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)[0, len(PROMPT_IDS):].tolist()
    return logits, tokens


async def logits_and_tokens(transport, runners, session="t"):
    client = await open_pipeline(transport, runners)
    try:
        logits = await client.forward(f"{session}-logits", 0, torch.tensor([PROMPT_IDS]), want="logits",
                                      all_positions=True)
        await client.end_session(f"{session}-logits")
        generated = await greedy_generate(client, PROMPT_IDS, NEW_TOKENS, {EOS}, session_id=f"{session}-gen")
        return logits, generated["token_ids"]
    finally:
        await client.close()


@pytest.mark.parametrize("transport", ["iroh", "tcp"])
def test_three_processes_equal_the_monolithic_model(transport, iroh_runners, tcp_runners, tiny_llama_model):
    runners = iroh_runners if transport == "iroh" else tcp_runners
    assert [r.ready["layers"] for r in runners] == [list(s) for s in SPLIT]
    assert [(r.ready["embeddings"], r.ready["lm_head"]) for r in runners] == [(True, False), (False, False),
                                                                               (False, True)]
    want_logits, want_tokens = expected(tiny_llama_model)
    logits, tokens = asyncio.run(logits_and_tokens(transport, runners))
    assert logits.shape == want_logits.shape
    assert (logits - want_logits).abs().max().item() <= 1e-5
    assert tokens == want_tokens


def test_interleaved_sessions_over_processes_match_separate_runs(iroh_runners):
    other = [9, 8, 7, 6, 5]

    async def scenario():
        client = await open_pipeline("iroh", iroh_runners)
        try:
            alone_a = await greedy_generate(client, PROMPT_IDS, 8, {EOS}, session_id="alone-a")
            alone_b = await greedy_generate(client, other, 8, {EOS}, session_id="alone-b")
            both = await asyncio.gather(greedy_generate(client, PROMPT_IDS, 8, {EOS}, session_id="both-a"),
                                        greedy_generate(client, other, 8, {EOS}, session_id="both-b"))
            return alone_a["token_ids"], alone_b["token_ids"], [g["token_ids"] for g in both]
        finally:
            await client.close()

    alone_a, alone_b, both = asyncio.run(scenario())
    assert both == [alone_a, alone_b] and alone_a != alone_b


# ---- bad frames, sent raw over TCP ----------------------------------------------------------

class RawPeer:
    """A TCP peer that writes arbitrary bytes, to send what a well-behaved Channel never would."""

    def __init__(self, address: str) -> None:
        self.sock = socket.create_connection(parse_host_port(address), timeout=30)
        self.sock.sendall(HELLO)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_frame(self) -> tuple[dict, bytes]:
        prefix = self._exactly(PREFIX.size)
        header_bytes, payload_bytes = PREFIX.unpack(prefix)
        return decode_frame(prefix + self._exactly(header_bytes + payload_bytes))

    def is_closed_by_peer(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def _exactly(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            assert chunk, "runner closed the connection"
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()


def ping(peer: RawPeer) -> dict:
    peer.send(encode_frame({"type": "ping"}))
    header, _ = peer.recv_frame()
    assert header["type"] == "pong"
    return header


def test_bad_frames_get_error_frames_and_the_runner_keeps_serving(tcp_runners, tiny_llama_model):
    first = tcp_runners[0]
    token = pipeline_token(tcp_runners)
    assign_routes(tcp_runners, [r.address for r in tcp_runners], token)
    peer = RawPeer(first.address)
    try:
        peer.send(encode_frame({"type": "hello", "token": token}))     # a member of the pipeline
        assert peer.recv_frame()[0]["type"] == "hello"
        peer.send(encode_frame({"type": "teleport"}))
        header, _ = peer.recv_frame()
        assert header["type"] == "error" and header["field"] == "type" and "teleport" in header["reason"]

        good_header, good_payload = tensor_to_frame("forward", torch.tensor([PROMPT_IDS]), session_id="raw",
                                                    position=0, want="token")
        # shape in the header does not match the payload: the frame is skipped whole
        lying = dict(good_header, shape=[1, 3])
        peer.send(struct.pack(">IQ", *_lengths(lying, good_payload)) + _json(lying) + good_payload)
        header, _ = peer.recv_frame()
        assert header["type"] == "error" and header["field"] == "shape"

        # hidden states sent to the first stage, which expects token ids
        hidden_header, hidden_payload = tensor_to_frame("forward", torch.zeros(1, 2, 64), session_id="raw",
                                                        position=0)
        peer.send(encode_frame(hidden_header, hidden_payload))
        header, _ = peer.recv_frame()
        assert header["type"] == "error" and header["field"] == "tensor.shape"

        missing = {k: v for k, v in good_header.items() if k != "session_id"}
        peer.send(encode_frame(missing, good_payload))
        header, _ = peer.recv_frame()
        assert header["type"] == "error" and header["field"] == "session_id"

        peer.send(PREFIX.pack(5, 0) + b"{nope")
        header, _ = peer.recv_frame()
        assert header["type"] == "error" and header["field"] == "header"

        # after all that, the same connection still computes (direct mode: hidden states come back)
        peer.send(encode_frame(good_header, good_payload))
        header, payload = peer.recv_frame()
        assert header["type"] == "result" and header["shape"] == [1, len(PROMPT_IDS), 64]
    finally:
        peer.close()

    oversized = RawPeer(first.address)
    oversized.send(PREFIX.pack(10, 2**40) + b"x" * 10)
    assert oversized.is_closed_by_peer()
    oversized.close()

    truncated = RawPeer(first.address)
    truncated.send(PREFIX.pack(100, 0) + b'{"type":')
    truncated.close()

    survivor = RawPeer(first.address)
    try:
        survivor.send(encode_frame({"type": "hello", "token": token}))
        assert survivor.recv_frame()[0]["type"] == "hello"
        assert ping(survivor)["frames_refused"] >= 6
    finally:
        survivor.close()
    want_logits, want_tokens = expected(tiny_llama_model)
    _, tokens = asyncio.run(logits_and_tokens("tcp", tcp_runners, session="after-bad"))
    assert tokens == want_tokens


def _json(header: dict) -> bytes:
    import json

    return json.dumps(header, separators=(",", ":")).encode()


def _lengths(header: dict, payload: bytes) -> tuple[int, int]:
    return len(_json(header)), len(payload)


def test_a_refused_step_reaches_the_ingress_as_an_error(iroh_runners):
    from engine.errors import InvalidInput

    async def scenario():
        client = await open_pipeline("iroh", iroh_runners)
        try:
            with pytest.raises(InvalidInput) as error:
                await client.forward("never-started", 5, torch.tensor([[1]]), timeout_s=30)
            assert "position" in str(error.value)
            # the pipeline still serves the next request on the same client
            return await greedy_generate(client, PROMPT_IDS, 3, {EOS}, session_id="after-error")
        finally:
            await client.close()

    assert len(asyncio.run(scenario())["token_ids"]) == 3


def test_a_runner_with_bad_arguments_says_why(tiny_llama):
    from engine.errors import InvalidInput

    with pytest.raises(InvalidInput) as error:
        start_runners(str(tiny_llama), [(4, 9)], "tcp", ready_timeout_s=120)
    assert error.value.field == "layers" and "6 layers" in str(error.value)

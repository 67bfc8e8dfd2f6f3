"""Frame throughput and small-frame latency on loopback: iroh (buffer fix on and off) vs plain TCP.

    .venv/bin/python benchmarks/bench_transport.py [--mib 16] [--rounds 8] [--unpatched-rounds 2]
                                                   [--pings 200]

Throughput: one frame = send() on one channel end and the matching recv() on the other, both in
this process and event loop, timed from the start of send to the end of recv; MB/s = payload bytes
/ that time (MB = 10^6 B). The transports take turns frame by frame (TCP, iroh, iroh without the
fix, ...) so a busy shared machine slows them alike; figures are medians over --rounds after one
warm-up round, and the ratio is the median of per-round ratios. Goal: iroh >= 0.5x TCP.

Latency: median round trip of a small activation frame (1 x 576 bfloat16, SmolLM2's hidden size)
to an echo task and back, per transport.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from engine.transport import Channel, ConnectionClosed, iroh_fix, start_node, tensor_to_frame  # noqa: E402

MB = 10**6
MIB = 2**20


async def open_pair(transport: str) -> tuple[list, Channel, Channel]:
    server = await start_node(transport)
    client = await start_node(transport)
    sender = await client.connect(server.address)
    receiver = await server.accept()
    return [server, client], sender, receiver


async def time_one_frame(sender: Channel, receiver: Channel, payload: bytes, seq: int) -> float:
    start = time.perf_counter()
    sending = asyncio.ensure_future(sender.send({"type": "bench", "seq": seq}, payload))
    header, received = await receiver.recv()
    await sending
    elapsed = time.perf_counter() - start
    assert header["seq"] == seq and len(received) == len(payload)
    return elapsed


async def echo(channel: Channel) -> None:
    try:
        while True:
            await channel.send(*await channel.recv())
    except ConnectionClosed:
        pass


async def ping_ms(sender: Channel, receiver: Channel, pings: int) -> float:
    echoing = asyncio.ensure_future(echo(receiver))
    header, payload = tensor_to_frame("activations", torch.randn(1, 1, 576).to(torch.bfloat16), session="b")
    seconds = []
    for index in range(pings + 10):
        start = time.perf_counter()
        await sender.send(header, payload)
        await sender.recv()
        if index >= 10:
            seconds.append(time.perf_counter() - start)
    echoing.cancel()
    return statistics.median(seconds) * 1e3


async def run(mib: int, rounds: int, unpatched_rounds: int, pings: int) -> None:
    payload = os.urandom(mib * MIB)
    tcp_nodes, tcp_send, tcp_recv = await open_pair("tcp")
    iroh_nodes, iroh_send, iroh_recv = await open_pair("iroh")
    tcp_s, fixed_s, unfixed_s, ratios = [], [], [], []
    for round_index in range(rounds + 1):
        iroh_fix.apply()
        tcp = await time_one_frame(tcp_send, tcp_recv, payload, round_index)
        fixed = await time_one_frame(iroh_send, iroh_recv, payload, round_index)
        if round_index == 0:
            continue  # warm-up: windows, congestion control, allocators
        tcp_s.append(tcp)
        fixed_s.append(fixed)
        ratios.append(tcp / fixed)
        if round_index <= unpatched_rounds:
            iroh_fix.remove()
            unfixed_s.append(await time_one_frame(iroh_send, iroh_recv, payload, round_index))
            iroh_fix.apply()

    def mb_s(seconds: list[float]) -> float:
        return len(payload) / statistics.median(seconds) / MB

    print(f"{mib} MiB frames over loopback, both ends in one process (median MB/s, MB = 10^6 B)")
    print(f"  {'TCP (asyncio streams)':<26}{mb_s(tcp_s):>9.1f} MB/s   ({len(tcp_s)} frames)")
    print(f"  {'iroh, buffer fix on':<26}{mb_s(fixed_s):>9.1f} MB/s   ({len(fixed_s)} frames)")
    if unfixed_s:
        print(f"  {'iroh, buffer fix off':<26}{mb_s(unfixed_s):>9.1f} MB/s   ({len(unfixed_s)} frames)")
    print(f"  {'iroh (fix on) / TCP':<26}{statistics.median(ratios):>9.2f} x      goal >= 0.5")
    if unfixed_s:
        print(f"  {'iroh fix on / fix off':<26}{mb_s(fixed_s) / mb_s(unfixed_s):>9.1f} x")
    if pings:
        print(f"Small frame (1 x 576 bf16) round trip, median of {pings}")
        print(f"  {'TCP':<26}{await ping_ms(tcp_send, tcp_recv, pings):>9.3f} ms")
        print(f"  {'iroh':<26}{await ping_ms(iroh_send, iroh_recv, pings):>9.3f} ms")
    for channel in (tcp_send, tcp_recv, iroh_send, iroh_recv):
        await channel.close()
    for node in tcp_nodes + iroh_nodes:
        await node.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=16, help="payload per frame, MiB")
    parser.add_argument("--rounds", type=int, default=8, help="timed frames per transport")
    parser.add_argument(
        "--unpatched-rounds", type=int, default=2, help="of those, also timed without the fix"
    )
    parser.add_argument("--pings", type=int, default=200, help="small-frame round trips (0: skip)")
    args = parser.parse_args()
    asyncio.run(run(args.mib, args.rounds, args.unpatched_rounds, args.pings))
    return 0


if __name__ == "__main__":
    sys.exit(main())

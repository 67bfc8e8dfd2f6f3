"""Frame throughput and small-frame latency on loopback: iroh (buffer fix on and off) vs plain TCP.

    .venv/bin/python benchmarks/bench_transport.py [--mib 16] [--rounds 8] [--unpatched-rounds 2]
                                                   [--pings 200] [--processes] [--piece-kib 256]

Throughput: one frame = send() of a --mib payload until the receiver's tiny acknowledgement is
back; MB/s = payload bytes / that time (MB = 10^6 B). The receivers run in this process and event
loop (both ends' Python work on one thread), or with --processes in a child process (as between
real peers). The transports take turns frame by frame (TCP, iroh, iroh without the fix, ...) so a
busy shared machine slows them alike; figures are medians over --rounds after one warm-up round,
and the ratio is the median of per-round ratios. Goal: iroh >= 0.5x TCP.

CPU is this process's CPU time (all threads) per MiB of payload: both ends of the transfer, or only
the sending end with --processes. iroh needs several times TCP's CPU per byte (the bindings convert
bytes one at a time, QUIC encrypts and packetises in user space), so on a small or busy machine its
throughput is bounded by free cores: the load average is printed before and after for that reason.

Latency: median round trip of a small activation frame (1 x 576 bfloat16, SmolLM2's hidden size)
echoed by the receiver.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from engine.transport import (  # noqa: E402
    Channel,
    ConnectionClosed,
    Node,
    iroh_channel,
    iroh_fix,
    start_node,
    tensor_to_frame,
)

MB = 10**6
MIB = 2**20


async def serve(channel: Channel) -> None:
    """The receiving end: acknowledge each bench frame with a tiny frame, echo anything else."""
    try:
        while True:
            header, payload = await channel.recv()
            if header["type"] == "bench":
                await channel.send({"type": "ack", "seq": header["seq"]})
            else:
                await channel.send(header, payload)
    except ConnectionClosed:
        await channel.close()


async def serve_in_child() -> None:
    """Child process (--serve): print both nodes' addresses, serve one channel on each."""
    nodes = {transport: await start_node(transport) for transport in ("tcp", "iroh")}
    print(json.dumps({transport: node.address for transport, node in nodes.items()}), flush=True)

    async def accept_and_serve(node: Node) -> None:
        await serve(await node.accept())

    await asyncio.gather(*(accept_and_serve(node) for node in nodes.values()))
    for node in nodes.values():
        await node.close()


async def time_one_frame(sender: Channel, payload: bytes, seq: int) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) from the start of send() until the receiver's
    acknowledgement is back."""
    start, start_cpu = time.perf_counter(), time.process_time()
    await sender.send({"type": "bench", "seq": seq}, payload)
    header, _ = await sender.recv()
    elapsed, elapsed_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    assert header == {"type": "ack", "seq": seq, "payload_bytes": 0}, header
    return elapsed, elapsed_cpu


async def ping_ms(sender: Channel, pings: int) -> float:
    header, payload = tensor_to_frame("activations", torch.randn(1, 1, 576).to(torch.bfloat16), session="b")
    seconds = []
    for index in range(pings + 10):
        start = time.perf_counter()
        await sender.send(header, payload)
        await sender.recv()
        if index >= 10:
            seconds.append(time.perf_counter() - start)
    return statistics.median(seconds) * 1e3


async def run(mib: int, rounds: int, unpatched_rounds: int, pings: int, processes: bool) -> None:
    payload = os.urandom(mib * MIB)
    child = None
    closables: list = []
    senders: dict[str, Channel] = {}
    if processes:
        child = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--serve", stdout=asyncio.subprocess.PIPE
        )
        assert child.stdout is not None
        addresses = json.loads(await asyncio.wait_for(child.stdout.readline(), 60))
    for transport in ("tcp", "iroh"):
        client = await start_node(transport)
        closables.append(client)
        if processes:
            senders[transport] = await client.connect(addresses[transport])
        else:
            server = await start_node(transport)
            closables.append(server)
            senders[transport] = await client.connect(server.address)
            closables.append(asyncio.ensure_future(serve(await server.accept())))

    load_before = os.getloadavg()[0]
    tcp_s, fixed_s, unfixed_s, ratios = [], [], [], []
    cpu_s: dict[str, list[float]] = {"tcp": [], "fixed": [], "unfixed": []}
    for round_index in range(rounds + 1):
        iroh_fix.apply()
        tcp, tcp_cpu = await time_one_frame(senders["tcp"], payload, round_index)
        fixed, fixed_cpu = await time_one_frame(senders["iroh"], payload, round_index)
        if round_index == 0:
            continue  # warm-up: windows, congestion control, allocators
        tcp_s.append(tcp)
        fixed_s.append(fixed)
        cpu_s["tcp"].append(tcp_cpu)
        cpu_s["fixed"].append(fixed_cpu)
        ratios.append(tcp / fixed)
        if round_index <= unpatched_rounds:
            iroh_fix.remove()
            unfixed, unfixed_cpu = await time_one_frame(senders["iroh"], payload, round_index)
            unfixed_s.append(unfixed)
            cpu_s["unfixed"].append(unfixed_cpu)
            iroh_fix.apply()

    def mb_s(seconds: list[float]) -> float:
        return len(payload) / statistics.median(seconds) / MB

    def cpu_ms_per_mib(key: str) -> float:
        return statistics.median(cpu_s[key]) * 1e3 / mib

    where = "receiver in a child process" if processes else "both ends in one process"
    print(f"{mib} MiB frames over loopback, {where} (median MB/s, MB = 10^6 B); CPU = this process")
    print(f"  load average before {load_before:.2f}, after {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
    rows = [("TCP (asyncio streams)", tcp_s, "tcp"), ("iroh, buffer fix on", fixed_s, "fixed")]
    if unfixed_s:
        rows.append(("iroh, buffer fix off", unfixed_s, "unfixed"))
    for label, seconds, key in rows:
        print(
            f"  {label:<26}{mb_s(seconds):>9.1f} MB/s   ({len(seconds)} frames, "
            f"CPU {cpu_ms_per_mib(key):.2f} ms/MiB)"
        )
    print(f"  {'iroh (fix on) / TCP':<26}{statistics.median(ratios):>9.2f} x      goal >= 0.5")
    if unfixed_s:
        print(f"  {'iroh fix on / fix off':<26}{mb_s(fixed_s) / mb_s(unfixed_s):>9.1f} x")
    if pings:
        print(f"Small frame (1 x 576 bf16) round trip, median of {pings}")
        print(f"  {'TCP':<26}{await ping_ms(senders['tcp'], pings):>9.3f} ms")
        print(f"  {'iroh':<26}{await ping_ms(senders['iroh'], pings):>9.3f} ms")
    for sender in senders.values():
        await sender.close()
    await asyncio.sleep(0.2)  # let the receivers see the end of their streams
    for closable in closables:
        if isinstance(closable, asyncio.Future):
            closable.cancel()
        else:
            await closable.close()
    if child is not None:
        try:
            await asyncio.wait_for(child.wait(), 15)
        except TimeoutError:
            child.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=16, help="payload per frame, MiB")
    parser.add_argument("--rounds", type=int, default=8, help="timed frames per transport")
    parser.add_argument(
        "--unpatched-rounds", type=int, default=2, help="of those, also timed without the fix"
    )
    parser.add_argument("--pings", type=int, default=200, help="small-frame round trips (0: skip)")
    parser.add_argument("--processes", action="store_true", help="receivers in a child process")
    parser.add_argument(
        "--piece-kib",
        type=int,
        default=iroh_channel.PIECE_BYTES // 2**10,
        help="iroh: bytes per FFI read/write call, KiB (this process only)",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    iroh_channel.PIECE_BYTES = args.piece_kib * 2**10
    if args.serve:
        asyncio.run(serve_in_child())
    else:
        asyncio.run(run(args.mib, args.rounds, args.unpatched_rounds, args.pings, args.processes))
    return 0


if __name__ == "__main__":
    sys.exit(main())

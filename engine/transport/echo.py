"""An echo peer: `python -m engine.transport.echo --transport iroh|tcp [--bind 127.0.0.1:0] [--channels N]`.

Prints one line ``ADDRESS <address>`` on stdout, then sends every frame it receives straight back
(bad frames are answered with a ``{"type": "error", "field": ..., "reason": ...}`` frame). Exits
after serving N channels (default: never). Used by the cross-process tests and for checking that
two machines can reach each other.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from engine.transport import TRANSPORTS, Channel, ConnectionClosed, FrameError, start_node


async def serve_echo(channel: Channel) -> None:
    """Echo frames on `channel` until the peer closes it."""

    async def refuse(exc: FrameError) -> None:
        if exc.recoverable:
            await channel.send({"type": "error", "field": exc.field, "reason": exc.reason})

    async with channel:
        try:
            async for header, payload in channel.frames(refuse):
                await channel.send(header, payload)
        except ConnectionClosed:
            return


async def _main(transport: str, bind_addr: str, channels: int) -> None:
    async with await start_node(transport, bind_addr) as node:
        print(f"ADDRESS {node.address}", flush=True)
        served = []
        while channels <= 0 or len(served) < channels:
            served.append(asyncio.ensure_future(serve_echo(await node.accept())))
        await asyncio.gather(*served)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=TRANSPORTS, default="iroh")
    parser.add_argument("--bind", default="127.0.0.1:0", help="host:port to listen on")
    parser.add_argument("--channels", type=int, default=0, help="exit after serving this many (0: never)")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_main(args.transport, args.bind, args.channels))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

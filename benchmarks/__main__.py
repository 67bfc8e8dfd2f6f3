"""Run every benchmark and write benchmarks/REPORT.md: `python -m benchmarks [--only a,b] [--quick]`.

Steps: describe the machine → run each benchmark script as its own process (so one that crashes or
hangs costs only its own section) → put its printed figures verbatim under its goal and its method
(the script's docstring) → write the report. Figures are whatever the scripts measured on this run;
nothing here is estimated or edited.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
REPORT_PATH = HERE / "REPORT.md"


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    goal: str
    args: tuple[str, ...] = ()
    quick_args: tuple[str, ...] = ()
    timeout_s: float = 1800.0


BENCHES = (
    Bench("planner scaling and tour gap", "bench_planner.py",
          "10,000 peers <= 100 ms median; 100 -> 10,000 peers <= 30x; tour <= 1 % longer than LKH",
          quick_args=("--quick",)),
    Bench("exact placement and greedy gap", "bench_exact.py",
          "exact solve <= 10 s at 60 peers; greedy median gap <= 2 %", quick_args=("--swarms", "10")),
    Bench("GUI latency", "bench_gui.py", "map <= 5 s after launch; slider release -> both plans drawn <= 200 ms",
          quick_args=("--launches", "1", "--releases", "5")),
    Bench("pipeline vs monolithic", "bench_pipeline.py", "3-stage pipeline >= 0.8x monolithic tokens/s",
          quick_args=("--repeats", "1", "--tokens", "32")),
    Bench("iroh vs TCP", "bench_transport.py", "iroh >= 0.5x TCP throughput (16 MiB frames)",
          quick_args=("--rounds", "3", "--pings", "50")),
    Bench("live swarm: measured vs estimated", "bench_live.py",
          "|measured - estimated| <= 15 % of measured ms/token on both plans; 0 hidden-state frames via the "
          "coordinator", args=("--json",)),
    Bench("serving concurrency", "bench_serve.py",
          "8 clients >= 3x the aggregate tokens/s of 1 client; outputs identical to single-client"),
    Bench("quantisation", "bench_quant.py", "planned weight bytes within 10 % of measured; answers name Paris"),
    Bench("carbon lookup at scale", "bench_carbon_lookup.py",
          "planning 10,000 peers from a peers file through the CLI costs <= 0.3 s more than 100 peers"),
    Bench("carbon over a simulated day", "bench_carbon_day.py",
          "re-placing deployment emits less than one that stays (synthetic diurnal series)"),
    Bench("soak under faults", "soak.py", "0 requests lost, 0 duplicated tokens, detection <= 3 s per kill",
          quick_args=("--requests", "24", "--kills", "1")),
    Bench("control-plane scale", "bench_control_plane.py",
          "1,000 runners at 1 Hz: no false deaths; re-plan over the live swarm <= 100 ms",
          quick_args=("--duration-s", "30")),
)


def machine() -> list[str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal"))
        memory = f"{mem_kib / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        memory = "unknown"
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU only)"
        torch_version = torch.__version__
    except ImportError:
        gpu, torch_version = "unknown", "not installed"
    return [f"- CPU: {cpu}, {os.cpu_count()} cores; memory {memory}; GPU: {gpu}",
            f"- Python {platform.python_version()}, torch {torch_version}, {platform.platform()}",
            f"- load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"]


def method_of(path: Path) -> str:
    """The benchmark's own docstring: how it measures, written next to the code that does it."""
    try:
        doc = ast.get_docstring(ast.parse(path.read_text()))
    except (OSError, SyntaxError):
        doc = None
    return doc or "(no description in the script)"


def run(bench: Bench, quick: bool) -> tuple[str, str, float]:
    """(status, output, seconds) for one benchmark script run as a child process."""
    path = HERE / bench.script
    if not path.is_file():
        return "missing", f"{bench.script} is not in this checkout", 0.0
    command = [sys.executable, str(path), *bench.args, *(bench.quick_args if quick else ())]
    started_s = time.monotonic()
    try:
        done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=bench.timeout_s,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return f"timed out after {bench.timeout_s:g} s", out, time.monotonic() - started_s
    status = "ran" if done.returncode == 0 else f"failed (exit {done.returncode})"
    output = done.stdout if done.returncode == 0 else done.stdout + "\n--- stderr (last 40 lines) ---\n" + \
        "\n".join(done.stderr.splitlines()[-40:])
    return status, output, time.monotonic() - started_s


def section(bench: Bench, status: str, output: str, seconds: float, quick: bool) -> list[str]:
    command = " ".join(["python", f"benchmarks/{bench.script}", *bench.args, *(bench.quick_args if quick else ())])
    return [f"## {bench.name}", "", f"- goal: {bench.goal}", f"- command: `{command}` — {status}, {seconds:.0f} s",
            "", "How it is measured (from the script):", "", "```text", method_of(HERE / bench.script), "```", "",
            "Output:", "", "```text", output.rstrip() or "(nothing printed)", "```", ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated script names (bench_planner,soak,...)")
    parser.add_argument("--quick", action="store_true", help="smaller runs where a script offers them")
    parser.add_argument("--output", type=Path, default=REPORT_PATH)
    parser.add_argument("--update", action="store_true",
                        help="rerun only the --only benchmarks and keep the other sections of the report as they are")
    args = parser.parse_args(argv)
    wanted = {name.strip().removesuffix(".py") for name in args.only.split(",") if name.strip()}
    benches = [b for b in BENCHES if not wanted or b.script.removesuffix(".py") in wanted]
    unknown = wanted - {b.script.removesuffix(".py") for b in BENCHES}
    if unknown:
        print(f"error: --only = {','.join(sorted(unknown))!r}: not a benchmark here", file=sys.stderr)
        return 2
    kept = _sections(args.output) if args.update else {}
    lines = ["# Prismn benchmark report", "",
             f"Written by `python -m benchmarks{' --quick' if args.quick else ''}` on "
             f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}. Every figure below was printed by the "
             "script named in its section on this run; goals stand beside them.", "", "## Machine", "", *machine(), ""]
    summary = ["| benchmark | goal | run |", "| --- | --- | --- |"]
    body: list[str] = []
    if kept:
        lines[2] += (f" Sections rerun by `--update` then: {', '.join(b.name for b in benches)} (the load at the "
                     "start above is that rerun's); the others are kept from the run before, each with its own output.")
    for bench in BENCHES if kept else benches:
        if bench not in benches:
            old = kept.get(bench.name)
            if old is not None:
                summary.append(f"| [{bench.name}](#{_anchor(bench.name)}) | {bench.goal} | {old[0]} (kept) |")
                body += old[1]
            continue
        print(f"running {bench.script} ...", flush=True)
        status, output, seconds = run(bench, args.quick)
        print(f"  {status} in {seconds:.0f} s", flush=True)
        summary.append(f"| [{bench.name}](#{_anchor(bench.name)}) | {bench.goal} | {status} |")
        body += section(bench, status, output, seconds, args.quick)
    args.output.write_text("\n".join([*lines, "## Summary", "", *summary, "", *body]))
    print(f"wrote {args.output}")
    return 0


def _sections(report: Path) -> dict[str, tuple[str, list[str]]]:
    """The benchmark sections of an earlier report: name -> (its run status, its lines)."""
    if not report.is_file():
        return {}
    names = {b.name for b in BENCHES}
    sections: dict[str, tuple[str, list[str]]] = {}
    current: list[str] | None = None
    for line in report.read_text().splitlines():
        if line.startswith("## "):
            current = [] if line[3:] in names else None
            if current is not None:
                sections[line[3:]] = ("ran", current)
        if current is not None:
            current.append(line)
            if line.startswith("- command:") and " — " in line:
                sections[current[0][3:]] = (line.split(" — ", 1)[1].rsplit(",", 1)[0], current)
    return sections


def _anchor(title: str) -> str:
    return "".join(c for c in title.lower().replace(" ", "-") if c.isalnum() or c == "-")


if __name__ == "__main__":
    sys.exit(main())

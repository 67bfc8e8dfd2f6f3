"""`python -m engine ...`: plan, compare, inspect-model, carbon, generate.

A thin shell: parse flags, load the model and the swarm, call the pure planner, print.
Exit codes: 0 ok, 2 bad input (one line on stderr naming the field and value), 3 infeasible plan.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from engine.cli_carbon import add_carbon_parser, add_signal_flag, cmd_carbon, signal_summary
from engine.errors import InvalidInput, PrismnError
from engine.planning.types import Ingress, Policy, Weights
from engine.validate import finite_number

EXIT_OK, EXIT_BAD_INPUT, EXIT_INFEASIBLE = 0, 2, 3


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line naming it, with our exit code."""

    def error(self, message: str) -> None:  # type: ignore[override]
        # main() names the arguments it parsed (not sys.argv: main(argv) may be called directly).
        raise _UsageError(message)


class _UsageError(Exception):
    pass


def parse_weights(text: str) -> Weights:
    """'carbon=0.6,distance=0.3,vram=0.1' -> Weights; names may be omitted (then 0)."""
    values = {"carbon": 0.0, "distance": 0.0, "vram": 0.0}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, raw = part.partition("=")
        name = name.strip()
        if not sep or name not in values:
            raise InvalidInput("weights", text, "expected carbon=X,distance=Y,vram=Z")
        try:
            value = float(raw)
        except ValueError:
            raise InvalidInput(f"weights.{name}", raw, "expected a number") from None
        values[name] = finite_number(value, f"weights.{name}", minimum=0.0)
    if sum(values.values()) <= 0:
        raise InvalidInput("weights", text, "at least one weight must be > 0")
    return Weights(**values)


def parse_ingress(text: str) -> Ingress:
    """'LAT,LON' -> Ingress."""
    parts = text.split(",")
    if len(parts) != 2:
        raise InvalidInput("ingress", text, "expected LAT,LON")
    try:
        lat, lon = float(parts[0]), float(parts[1])
    except ValueError:
        raise InvalidInput("ingress", text, "expected two numbers LAT,LON") from None
    return Ingress(lat=finite_number(lat, "ingress.lat", minimum=-90, maximum=90),
                   lon=finite_number(lon, "ingress.lon", minimum=-180, maximum=180), name="cli")


def _model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="preset name, config JSON, folder with config.json, or hub id")
    p.add_argument("--quant", default="bf16", help="fp32|bf16|fp16|int8|int4 (default bf16)")
    p.add_argument("--context", type=_int_flag("context"), default=4096, help="tokens of KV cache (default 4096)")
    p.add_argument("--batch", type=_int_flag("batch"), default=1)
    p.add_argument("--group-size", type=_int_flag("group_size"), default=128, help="int4 group size")
    _device_kind_flag(p)
    p.add_argument("--safety-margin", type=_float_flag("safety_margin"), default=0.10,
                   help="fraction of each peer's free VRAM kept unused (default 0.10)")


def _device_kind_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device-kind", default="cuda", choices=("cuda", "cpu"),
                   help="how the peers hold int4 weights: packed (cuda, default) or one per byte (cpu)")


def _swarm_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--peers", required=True, help="peers JSON file (see README)")
    p.add_argument("--ingress", type=_checked(parse_ingress), default=None, help="LAT,LON (overrides the file's)")
    p.add_argument("--weights", type=_checked(parse_weights), default=Weights(),
                   help="carbon=0.6,distance=0.3,vram=0.1")
    add_signal_flag(p)


def _checked(parse):
    """Let InvalidInput from a flag parser escape argparse instead of becoming a usage error."""

    def wrapper(text: str):
        try:
            return parse(text)
        except InvalidInput as exc:
            raise _FlagError(exc) from None

    wrapper.__name__ = parse.__name__
    return wrapper


class _FlagError(Exception):
    def __init__(self, error: InvalidInput) -> None:
        self.error = error


def _int_flag(field: str):
    def parse(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise InvalidInput(field, text, "expected an integer") from None
    return _checked(parse)


def _float_flag(field: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise InvalidInput(field, text, "expected a number") from None
        return finite_number(value, field)
    return _checked(parse)


def _target_flags(p: argparse.ArgumentParser) -> None:
    """Targets and placement constraints (engine.planning.targets), and exact mode."""
    p.add_argument("--max-ms-per-token", type=_float_flag("max_ms_per_token"), default=None,
                   help="carbon plan: est. ms/token at most this")
    p.add_argument("--max-g-co2-per-1k", type=_float_flag("max_g_co2_per_1k"), default=None,
                   help="carbon plan: gCO2 per 1,000 tokens at most this")
    p.add_argument("--max-peers", type=_int_flag("max_peers"), default=None, help="both plans: at most N peers")
    p.add_argument("--allow-countries", type=_checked(_countries("allow_countries")), default=None,
                   help="both plans: only peers in these ISO 3166 alpha-2 countries, e.g. DE,FR")
    p.add_argument("--deny-countries", type=_checked(_countries("deny_countries")), default=frozenset(),
                   help="both plans: no peers in these countries")
    p.add_argument("--exclude-peers", type=_checked(_peer_ids), default=frozenset(),
                   help="both plans: never these peer ids (comma-separated)")
    p.add_argument("--exact", action="store_true",
                   help="carbon plan: solve the MILP (HiGHS) and certify the greedy plan's gap")
    p.add_argument("--time-limit", type=_float_flag("time_limit"), default=10.0,
                   help="exact mode's time limit in seconds (default 10)")


def _countries(field_name: str):
    def parse(text: str) -> frozenset[str]:
        from engine.planning.targets import country_code

        codes = [c for c in (part.strip() for part in text.split(",")) if c]
        if not codes:
            raise InvalidInput(field_name, text, "expected ISO 3166 alpha-2 codes such as DE,FR")
        return frozenset(country_code(c, field_name) for c in codes)
    parse.__name__ = field_name
    return parse


def _peer_ids(text: str) -> frozenset[str]:
    ids = [p for p in (part.strip() for part in text.split(",")) if p]
    if not ids:
        raise InvalidInput("exclude_peers", text, "expected peer ids separated by commas")
    return frozenset(ids)


def _targets(args: argparse.Namespace):
    from engine.planning.targets import Targets

    return Targets(max_ms_per_token=args.max_ms_per_token, max_g_co2_per_1k=args.max_g_co2_per_1k,
                   max_peers=args.max_peers, allow_countries=args.allow_countries,
                   deny_countries=args.deny_countries, exclude_peers=args.exclude_peers)


def _plan_pair(args: argparse.Namespace):
    """(VRAM baseline, carbon plan, swarm) for the flags: plain sliders, to targets, or exact."""
    fp = _footprint(args)
    swarm = _swarm(args)
    return (*_plans_for(args, fp, swarm), swarm)


def _plans_for(args: argparse.Namespace, fp, swarm):
    from engine.planning.planner import plan_both

    targets = _targets(args)
    if targets.allow_countries is not None or targets.deny_countries:
        from engine.swarm import with_countries

        swarm = with_countries(swarm)
    if args.exact:
        from engine.planning.exact import plan_both_exact

        return plan_both_exact(fp, swarm.peers, swarm.ingress, args.weights, targets, args.time_limit)
    if targets.any:
        from engine.planning.to_targets import plan_both_to_targets

        return plan_both_to_targets(fp, swarm.peers, swarm.ingress, args.weights, targets)
    return plan_both(fp, swarm.peers, swarm.ingress, args.weights)


def _coordinate_flag(field: str, limit: float):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise InvalidInput(field, text, "expected a number") from None
        return finite_number(value, field, minimum=-limit, maximum=limit)
    return _checked(parse)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m engine", description="Prismn placement engine")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    plan = sub.add_parser("plan", help="place a model on a swarm with one policy")
    _model_flags(plan)
    _swarm_flags(plan)
    _target_flags(plan)
    plan.add_argument("--policy", choices=[p.value for p in Policy], default=Policy.CARBON.value)
    plan.add_argument("--json", action="store_true", help="print the prismn.plan/1 JSON")

    compare = sub.add_parser("compare", help="both policies side by side")
    _model_flags(compare)
    _swarm_flags(compare)
    _target_flags(compare)
    compare.add_argument("--json", action="store_true", help="print {\"vram\": plan, \"carbon\": plan}")

    inspect = sub.add_parser("inspect-model", help="parameter and byte sizes of a model")
    inspect.add_argument("model")
    inspect.add_argument("--quant", default="bf16")
    inspect.add_argument("--group-size", type=_int_flag("group_size"), default=128)
    _device_kind_flag(inspect)
    inspect.add_argument("--json", action="store_true")

    add_carbon_parser(sub, _coordinate_flag)
    sub.add_parser("generate", help="run a local pipeline (see `python -m engine generate --help`)",
                   add_help=False)
    return parser


def _footprint(args: argparse.Namespace):
    from engine.model import footprint, load_spec

    spec = load_spec(args.model)
    return footprint(spec, quant=args.quant, context=args.context, batch=args.batch,
                     group_size=args.group_size, safety_margin=args.safety_margin, device_kind=args.device_kind)


def _swarm(args: argparse.Namespace):
    from engine.swarm import load_swarm

    return load_swarm(args.peers, ingress_override=args.ingress, signal=args.signal)


def _cmd_plan(args: argparse.Namespace) -> int:
    from engine.plan_text import describe_plan
    from engine.planning.planner import make_plan

    if args.exact and args.policy != Policy.CARBON.value:
        raise InvalidInput("exact", args.policy, "exact mode plans the carbon policy")
    if args.exact or _targets(args).any:
        vram_plan, carbon_plan, swarm = _plan_pair(args)
        plan = carbon_plan if args.policy == Policy.CARBON.value else vram_plan
    else:
        swarm = _swarm(args)
        plan = make_plan(_footprint(args), swarm.peers, swarm.ingress, Policy(args.policy), args.weights)
    print(json.dumps(plan.to_dict(), indent=2) if args.json else
          describe_plan(plan) + "\n" + signal_summary(swarm.signals, args.signal))
    return EXIT_OK if plan.feasible else EXIT_INFEASIBLE


def _cmd_compare(args: argparse.Namespace) -> int:
    from engine.plan_text import compare_plans

    vram_plan, carbon_plan, swarm = _plan_pair(args)
    if args.json:
        print(json.dumps({"vram": vram_plan.to_dict(), "carbon": carbon_plan.to_dict()}, indent=2))
    else:
        print(compare_plans(vram_plan, carbon_plan) + "\n" + signal_summary(swarm.signals, args.signal))
    return EXIT_OK if (vram_plan.feasible and carbon_plan.feasible) else EXIT_INFEASIBLE


def _cmd_inspect(args: argparse.Namespace) -> int:
    from engine.model import inspect_model, load_spec

    info = inspect_model(load_spec(args.model), quant=args.quant, group_size=args.group_size,
                         device_kind=args.device_kind)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:>24}: {value}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["generate"]:
        from engine.generate import main as generate_main

        return generate_main(argv[1:])
    try:
        try:
            args = build_parser().parse_args(argv)
        except _UsageError as exc:
            raise InvalidInput("arguments", " ".join(argv), str(exc)) from None
        handler = {"plan": _cmd_plan, "compare": _cmd_compare, "inspect-model": _cmd_inspect,
                   "carbon": cmd_carbon}[args.command]
        return handler(args)
    except _FlagError as exc:
        _report(exc.error)
        return EXIT_BAD_INPUT
    except PrismnError as exc:
        _report(exc)
        return EXIT_BAD_INPUT


def _report(error: Exception) -> None:
    """The error as ONE line on stderr: reasons may quote a path or a message holding newlines."""
    print("error: " + " ".join(str(error).splitlines()), file=sys.stderr)

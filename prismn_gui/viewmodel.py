"""The window's state without Tk: inputs -> weights -> both plans -> table rows and diff strings.

Everything here is plain Python so it runs (and is tested) without a display. The planning itself
is the engine's: `plan_both` for the VRAM baseline and the carbon+distance plan, `pareto_sweep` for
the Pareto tab. This module only parses the fields, caches the expensive inputs (model spec,
footprint, swarm file) and turns plans into strings a person reads.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import InvalidInput, PrismnError
from engine.plan import Plan
from engine.plan_text import ComparisonRow, StageRow, comparison_rows, shortfall_message
from engine.plan_text import stage_rows as plan_text_stage_rows
from engine.planning.types import Ingress, Weights
from prismn_gui.cities import CUSTOM, city_coords
from prismn_gui.targets import NO_TARGETS_REQUEST, TargetsRequest, plan_pair

SWARM_INGRESS = "Swarm's ingress"
QUANTS: tuple[str, ...] = ("fp32", "bf16", "fp16", "int8", "int4")
DEFAULT_WEIGHTS = Weights()

# Slider presets: raw slider positions (0..1); the engine normalises them.
WEIGHT_PRESETS: dict[str, Weights] = {
    "Low carbon": Weights(carbon=0.85, distance=0.10, vram=0.05),
    "Low latency": Weights(carbon=0.10, distance=0.85, vram=0.05),
    "Balanced": Weights(carbon=0.45, distance=0.45, vram=0.10),
}


@dataclass(frozen=True)
class PlanRequest:
    """What the controls say, as typed (fields are parsed by the worker, errors name them)."""

    model: str = "llama-3.1-8b"       # preset name or path to a config.json
    quant: str = "bf16"
    context_text: str = "4096"
    ingress_choice: str = SWARM_INGRESS
    lat_text: str = ""
    lon_text: str = ""
    weights: Weights = DEFAULT_WEIGHTS
    swarm_path: str = ""              # "" -> the demo swarm
    request_id: int = 0
    live: bool = False                # plan over the coordinator's live peers, not a file
    live_key: tuple = ()              # the live peer ids when requested: a join or death re-plans
    signal: str = "average"           # carbon signal to plan with: "average" or "marginal"
    targets: TargetsRequest = NO_TARGETS_REQUEST   # targets, country filter, exact (prismn_gui.targets)

    def planning_key(self) -> tuple:
        """Everything but the weights: the Pareto sweep depends only on this."""
        return (self.model, self.quant, self.context_text, self.ingress_choice,
                self.lat_text, self.lon_text, self.swarm_path, self.live, self.live_key, self.signal)


@dataclass(frozen=True)
class PlanOutcome:
    request: PlanRequest
    peers: tuple = ()
    ingress: Ingress | None = None
    vram_plan: Plan | None = None
    carbon_plan: Plan | None = None
    error: str | None = None          # shown instead of a traceback
    error_field: str | None = None
    compute_ms: float = 0.0
    comparison: tuple[ComparisonRow, ...] = ()
    stage_rows: dict[str, tuple[StageRow, ...]] = field(default_factory=dict)
    notices: tuple[str, ...] = ()     # infeasible messages, one per infeasible plan
    signals: dict = field(default_factory=dict)   # peer id -> CarbonSignal, when the swarm has them


@dataclass(frozen=True)
class ParetoEntry:
    weights: Weights
    g_co2_per_1k_tokens: float
    est_ms_per_token: float


@dataclass(frozen=True)
class ParetoOutcome:
    key: tuple
    entries: tuple[ParetoEntry, ...] = ()
    error: str | None = None


# ---- parsing the fields ------------------------------------------------------------------

def parse_context(text: str) -> int:
    try:
        context = int(str(text).strip().replace("_", ""))
    except ValueError:
        raise InvalidInput("context", text, "expected a whole number of tokens") from None
    if context <= 0:
        raise InvalidInput("context", text, "expected a positive number of tokens")
    return context


def _parse_degrees(name: str, text: str, limit: float) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise InvalidInput(name, text, "expected degrees as a number") from None
    if not -limit <= value <= limit:
        raise InvalidInput(name, text, f"expected degrees in [-{limit:g}, {limit:g}]")
    return value


def parse_ingress(choice: str, lat_text: str, lon_text: str, swarm_ingress: Ingress) -> Ingress:
    if choice == SWARM_INGRESS:
        return swarm_ingress
    if choice == CUSTOM:
        return Ingress(_parse_degrees("ingress.lat", lat_text, 90.0),
                       _parse_degrees("ingress.lon", lon_text, 180.0), "custom")
    coords = city_coords(choice)
    if coords is None:
        raise InvalidInput("ingress", choice, "unknown city")
    return Ingress(coords[0], coords[1], choice)


def weights_for_preset(name: str) -> Weights:
    try:
        return WEIGHT_PRESETS[name]
    except KeyError:
        raise InvalidInput("preset", name, f"expected one of {sorted(WEIGHT_PRESETS)}") from None


# ---- strings for the comparison (built by engine.plan_text) -----------------------------

def infeasible_message(plan: Plan) -> str:
    label = "VRAM baseline" if plan.policy == "vram" else "Carbon+distance"
    return f"{label}: {shortfall_message(plan)}"


def stage_rows(plan: Plan, signals: dict | None = None) -> tuple[StageRow, ...]:
    """engine.plan_text's stage rows, each carbon value labelled with its live signal when known."""
    from prismn_gui.carbon_signals import signal_label
    return plan_text_stage_rows(plan, {peer_id: signal_label(signal) for peer_id, signal in (signals or {}).items()})


# ---- the planner shell the worker thread calls ------------------------------------------

class PlanningSession:
    """Turns requests into outcomes, caching spec, footprint and swarm between requests.

    Not thread-safe: one worker thread owns it. `live_swarm(ingress, model) -> Swarm` (the embedded
    coordinator's `swarm`, safe from any thread) answers requests with `live=True`; the ingress
    of the file swarm (the demo's by default) stays the ingress there, as local runners sit at
    demo-swarm cities.
    """

    def __init__(self, default_swarm_path: str | None = None, live_swarm=None) -> None:
        self._default_swarm_path = default_swarm_path
        self.live_swarm = live_swarm
        self._specs: dict[str, object] = {}
        self._footprints: dict[tuple, object] = {}
        self._swarms: dict[tuple, object] = {}
        self._resolver = None              # one carbon resolver: its country map loads once

    def swarm_path(self, request: PlanRequest) -> str:
        if request.swarm_path:
            return request.swarm_path
        if self._default_swarm_path:
            return self._default_swarm_path
        from engine.swarm import DEMO_SWARM_PATH
        return str(DEMO_SWARM_PATH)

    def _swarm(self, path: str, signal: str = "average"):
        from engine.carbon import CarbonResolver
        from engine.swarm import load_swarm, with_countries
        self._resolver = self._resolver or CarbonResolver(use_env=True)
        try:
            key = (path, os.stat(path).st_mtime_ns, signal)
        except OSError as exc:
            raise InvalidInput("swarm", path, exc.strerror or str(exc)) from None
        if key not in self._swarms:
            self._swarms.clear()
            self._swarms[key] = with_countries(
                load_swarm(Path(path), resolver=self._resolver, signal=signal), self._resolver)
        return self._swarms[key]

    def _footprint(self, request: PlanRequest, device_kind: str = "cuda"):
        from engine.model import footprint, load_spec
        if request.quant not in QUANTS:
            raise InvalidInput("quant", request.quant, f"expected one of {QUANTS}")
        context = parse_context(request.context_text)
        key = (request.model, request.quant, context, device_kind)
        if key not in self._footprints:
            if request.model not in self._specs:
                self._specs[request.model] = load_spec(request.model)
            self._footprints[key] = footprint(self._specs[request.model], quant=request.quant,
                                              context=context, device_kind=device_kind)
        return self._footprints[key]

    def inputs(self, request: PlanRequest):
        """(footprint, swarm, ingress) for a request; raises InvalidInput naming the field."""
        from engine.model.sizing import device_kind_for
        fp = self._footprint(request)
        swarm = self._swarm(self.swarm_path(request), request.signal)
        ingress = parse_ingress(request.ingress_choice, request.lat_text, request.lon_text, swarm.ingress)
        if request.live:
            live_swarm = self.live_swarm
            if live_swarm is None:
                raise InvalidInput("swarm", "live", "the coordinator is not running")
            from engine.swarm import with_countries
            # with what the runners measured for this model
            swarm = with_countries(live_swarm(ingress, fp.name), self._resolver)
            # Live runners may be CPU processes, which hold int4 differently (engine.model.sizing).
            fp = self._footprint(request, device_kind_for(p.gpu for p in swarm.peers))
        return fp, swarm, ingress

    def compute(self, request: PlanRequest) -> PlanOutcome:
        started = time.perf_counter()
        try:
            fp, swarm, ingress = self.inputs(request)
            vram_plan, carbon_plan = plan_pair(fp, swarm.peers, ingress, request.weights, request.targets)
        except InvalidInput as exc:
            return PlanOutcome(request, error=f"{exc.field} = {exc.value!r}: {exc.reason}",
                               error_field=exc.field,
                               compute_ms=(time.perf_counter() - started) * 1000)
        except PrismnError as exc:
            return PlanOutcome(request, error=str(exc), compute_ms=(time.perf_counter() - started) * 1000)
        notices = tuple(infeasible_message(p) for p in (vram_plan, carbon_plan) if not p.feasible)
        signals = dict(zip((p.id for p in swarm.peers), swarm.signals, strict=True)) if swarm.signals else {}
        return PlanOutcome(
            request=request,
            peers=tuple(swarm.peers),
            ingress=ingress,
            vram_plan=vram_plan,
            carbon_plan=carbon_plan,
            compute_ms=(time.perf_counter() - started) * 1000,
            comparison=comparison_rows(vram_plan, carbon_plan),
            stage_rows={"vram": stage_rows(vram_plan, signals), "carbon": stage_rows(carbon_plan, signals)},
            notices=notices,
            signals=signals,
        )

    def pareto(self, request: PlanRequest, steps: int = 6) -> ParetoOutcome:
        from engine.planning.pareto import pareto_sweep
        key = request.planning_key()
        try:
            fp, swarm, ingress = self.inputs(request)
            points = pareto_sweep(fp, swarm.peers, ingress, steps=steps)
        except PrismnError as exc:
            return ParetoOutcome(key, error=str(exc))
        entries: list[ParetoEntry] = []
        seen: set[tuple[float, float]] = set()
        for point in points:
            if not point.plan.feasible or point.plan.metrics is None:
                continue
            metrics = point.plan.metrics
            # Weights that lead to the same plan would stack on one spot; a click takes the first.
            spot = (round(metrics.g_co2_per_1k_tokens, 9), round(metrics.est_ms_per_token, 9))
            if spot not in seen:
                seen.add(spot)
                entries.append(ParetoEntry(point.weights, metrics.g_co2_per_1k_tokens, metrics.est_ms_per_token))
        return ParetoOutcome(key, tuple(entries))


def state_summary(outcome: PlanOutcome, update_number: int) -> dict:
    """The JSON the test hook writes after each applied update (PRISMN_STATE_FILE)."""
    def metrics(plan: Plan | None) -> dict | None:
        if plan is None:
            return None
        out = {"feasible": plan.feasible, "peers_used": len(plan.stages),
               "stage_peers": [s.peer_id for s in plan.stages]}
        if plan.metrics is not None:
            out.update({k: getattr(plan.metrics, k) for k in (
                "tour_km", "est_ms_per_token", "g_co2_per_1k_tokens", "avg_carbon_g_per_kwh",
                "vram_utilization")})
        if not plan.feasible:
            out.update({"shortfall_gb": plan.shortfall_gb, "shortfall_layers": plan.shortfall_layers})
        return out

    w = outcome.request.weights
    return {
        "update": update_number,
        "request_id": outcome.request.request_id,
        "weights": {"carbon": w.carbon, "distance": w.distance, "vram": w.vram},
        "model": outcome.request.model,
        "quant": outcome.request.quant,
        "context": outcome.request.context_text,
        "ingress": ({"lat": outcome.ingress.lat, "lon": outcome.ingress.lon, "name": outcome.ingress.name}
                    if outcome.ingress else None),
        "peer_count": len(outcome.peers),
        "live": outcome.request.live,
        "vram": metrics(outcome.vram_plan),
        "carbon": metrics(outcome.carbon_plan),
        "comparison": [[r.label, r.vram, r.carbon, r.diff] for r in outcome.comparison],
        "error": outcome.error,
        "error_field": outcome.error_field,
        "notices": list(outcome.notices),
        "compute_ms": outcome.compute_ms,
    }

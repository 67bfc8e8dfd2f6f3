"""The plan schema `prismn.plan/1` and its JSON form: one schema for CLI, GUI, coordinator, store.

`Plan.to_dict()` is exactly the CLI's `--json` output; `Plan.from_dict()` validates a plan that
crossed a file or the network and raises `InvalidInput` naming the field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from engine.errors import InvalidInput
from engine.validate import finite_number

SCHEMA = "prismn.plan/1"


@dataclass(frozen=True)
class Stage:
    peer_id: str
    layer_start: int                 # inclusive
    layer_end: int                   # exclusive
    embeddings: bool                 # holds the input embeddings (first stage)
    lm_head: bool                    # holds final norm + lm_head (last stage)
    vram_required_gb: float
    vram_free_gb: float
    carbon_g_per_kwh: float
    carbon_source: str
    lat: float
    lon: float
    gpu: str | None = None
    est_compute_ms: float | None = None      # this stage's share of est_ms_per_token
    compute_source: str | None = None        # "measured" (the runner timed itself) or "gpu table"

    @property
    def num_layers(self) -> int:
        return self.layer_end - self.layer_start


@dataclass(frozen=True)
class PlanMetrics:
    peers_used: int
    tour_km: float
    avg_carbon_g_per_kwh: float      # layer-weighted
    est_ms_per_token: float
    g_co2_per_1k_tokens: float
    vram_utilization: float          # required / free over the stages used, 0..1


@dataclass(frozen=True)
class ModelInfo:
    name: str
    num_layers: int
    param_count: int
    quant: str


@dataclass(frozen=True)
class Plan:
    policy: str
    weights: dict[str, float]
    model: ModelInfo
    ingress: dict[str, float]        # {"lat", "lon"}
    feasible: bool
    stages: tuple[Stage, ...] = ()
    metrics: PlanMetrics | None = None
    shortfall_gb: float | None = None
    shortfall_layers: int | None = None
    schema: str = field(default=SCHEMA)
    # Optional (planning to targets, exact mode); absent from the JSON when None.
    targets: dict[str, Any] | None = None      # the constraints asked (engine.planning.targets)
    binding: dict[str, Any] | None = None      # {constraint, asked, reachable, message}
    certificate: dict[str, Any] | None = None  # {objective, optimum, bound, gap, ...}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema": self.schema,
            "policy": self.policy,
            "weights": dict(self.weights),
            "model": asdict(self.model),
            "ingress": dict(self.ingress),
            "feasible": self.feasible,
            "stages": [asdict(s) for s in self.stages],
            "metrics": asdict(self.metrics) if self.metrics else None,
        }
        if not self.feasible:
            out["shortfall_gb"] = self.shortfall_gb
            out["shortfall_layers"] = self.shortfall_layers
        for name in _OPTIONAL_OBJECTS:
            if getattr(self, name) is not None:
                out[name] = dict(getattr(self, name))
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Plan:
        return _parse_plan(data)


# ---- validation of plans that crossed a file or the network -------------------------------

_OPTIONAL_OBJECTS = ("targets", "binding", "certificate")
_BINDING_KEYS = ("constraint", "message")
_CERTIFICATE_NUMBERS = ("optimum", "bound")
_CERTIFICATE_OPTIONAL = ("objective", "gap")   # null when no greedy plan met the targets


def _optional_objects(data: dict[str, Any]) -> dict[str, Any]:
    """targets / binding / certificate when present: JSON objects with their key fields checked."""
    out: dict[str, Any] = {}
    for name in _OPTIONAL_OBJECTS:
        value = data.get(name)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise InvalidInput(name, value, "expected an object or null")
        out[name] = value
    if "binding" in out:
        for key in _BINDING_KEYS:
            _require(out["binding"], key, str, "binding.")
    if "certificate" in out:
        for key in _CERTIFICATE_NUMBERS:
            _require(out["certificate"], key, float, "certificate.")
        for key in _CERTIFICATE_OPTIONAL:
            if out["certificate"].get(key) is not None:
                _require(out["certificate"], key, float, "certificate.")
    return out

def _require(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise InvalidInput(f"{where}{key}", None, "missing")
    value = data[key]
    if kind in (int, float):
        return finite_number(value, f"{where}{key}", integer=kind is int)
    if not isinstance(value, kind):
        raise InvalidInput(f"{where}{key}", value, f"expected {getattr(kind, '__name__', kind)}")
    return value


def _parse_stage(raw: Any, where: str) -> Stage:
    if not isinstance(raw, dict):
        raise InvalidInput(where.rstrip("."), raw, "expected an object")
    gpu = raw.get("gpu")
    if gpu is not None and not isinstance(gpu, str):
        raise InvalidInput(f"{where}gpu", gpu, "expected a string or null")
    stage = Stage(
        peer_id=_require(raw, "peer_id", str, where),
        layer_start=_require(raw, "layer_start", int, where),
        layer_end=_require(raw, "layer_end", int, where),
        embeddings=_require(raw, "embeddings", bool, where),
        lm_head=_require(raw, "lm_head", bool, where),
        vram_required_gb=_require(raw, "vram_required_gb", float, where),
        vram_free_gb=_require(raw, "vram_free_gb", float, where),
        carbon_g_per_kwh=_require(raw, "carbon_g_per_kwh", float, where),
        carbon_source=_require(raw, "carbon_source", str, where),
        lat=_require(raw, "lat", float, where),
        lon=_require(raw, "lon", float, where),
        gpu=gpu,
        est_compute_ms=(finite_number(raw["est_compute_ms"], f"{where}est_compute_ms", minimum=0.0)
                        if raw.get("est_compute_ms") is not None else None),
        compute_source=raw.get("compute_source") if isinstance(raw.get("compute_source"), str) else None,
    )
    if not 0 <= stage.layer_start < stage.layer_end:
        raise InvalidInput(f"{where}layer_end", stage.layer_end,
                           f"expected layer_start ({stage.layer_start}) < layer_end, both >= 0")
    return stage


def _parse_plan(data: Any) -> Plan:
    if not isinstance(data, dict):
        raise InvalidInput("plan", type(data).__name__, "expected a JSON object")
    schema = _require(data, "schema", str, "")
    if schema != SCHEMA:
        raise InvalidInput("schema", schema, f"expected {SCHEMA!r}")
    raw_model = _require(data, "model", dict, "")
    model = ModelInfo(
        name=_require(raw_model, "name", str, "model."),
        num_layers=_require(raw_model, "num_layers", int, "model."),
        param_count=_require(raw_model, "param_count", int, "model."),
        quant=_require(raw_model, "quant", str, "model."),
    )
    raw_weights = _require(data, "weights", dict, "")
    weights = {str(k): _require(raw_weights, k, float, "weights.") for k in raw_weights}
    raw_ingress = _require(data, "ingress", dict, "")
    ingress = {"lat": _require(raw_ingress, "lat", float, "ingress."),
               "lon": _require(raw_ingress, "lon", float, "ingress.")}
    feasible = _require(data, "feasible", bool, "")
    raw_stages = _require(data, "stages", list, "")
    stages = tuple(_parse_stage(s, f"stages[{i}].") for i, s in enumerate(raw_stages))
    metrics = None
    if data.get("metrics") is not None:
        m = _require(data, "metrics", dict, "")
        metrics = PlanMetrics(
            peers_used=_require(m, "peers_used", int, "metrics."),
            tour_km=_require(m, "tour_km", float, "metrics."),
            avg_carbon_g_per_kwh=_require(m, "avg_carbon_g_per_kwh", float, "metrics."),
            est_ms_per_token=_require(m, "est_ms_per_token", float, "metrics."),
            g_co2_per_1k_tokens=_require(m, "g_co2_per_1k_tokens", float, "metrics."),
            vram_utilization=_require(m, "vram_utilization", float, "metrics."),
        )
    extra = _optional_objects(data)
    if feasible:
        _check_layers_cover(stages, model.num_layers)
        if metrics is None:     # every reader of a feasible plan (CLI, GUI, store) shows them
            raise InvalidInput("metrics", data.get("metrics"), "a feasible plan carries its metrics")
        return Plan(policy=_require(data, "policy", str, ""), weights=weights, model=model,
                    ingress=ingress, feasible=True, stages=stages, metrics=metrics, **extra)
    if "binding" in extra and data.get("shortfall_gb") is None:
        # Infeasible because of a target, not VRAM: the binding constraint says why.
        return Plan(policy=_require(data, "policy", str, ""), weights=weights, model=model,
                    ingress=ingress, feasible=False, stages=(), metrics=metrics, **extra)
    return Plan(policy=_require(data, "policy", str, ""), weights=weights, model=model,
                ingress=ingress, feasible=False, stages=(), metrics=metrics,
                shortfall_gb=_require(data, "shortfall_gb", float, ""),
                shortfall_layers=_require(data, "shortfall_layers", int, ""), **extra)


def _check_layers_cover(stages: tuple[Stage, ...], num_layers: int) -> None:
    """A feasible plan covers layers 0..num_layers-1 exactly once, in stage order."""
    if not stages:
        raise InvalidInput("stages", [], "a feasible plan needs at least one stage")
    expected_start = 0
    seen: dict[str, int] = {}
    last = len(stages) - 1
    for i, stage in enumerate(stages):
        # The coordinator sends each peer the one stage with its id: a second would never run.
        if stage.peer_id in seen:
            raise InvalidInput(f"stages[{i}].peer_id", stage.peer_id,
                               f"already holds stages[{seen[stage.peer_id]}]; one stage per peer")
        seen[stage.peer_id] = i
        if 0 < i and stage.embeddings:
            raise InvalidInput(f"stages[{i}].embeddings", True, "only the first stage holds the embeddings")
        if i < last and stage.lm_head:
            raise InvalidInput(f"stages[{i}].lm_head", True, "only the last stage holds final norm + lm_head")
        if stage.layer_start != expected_start:
            raise InvalidInput(f"stages[{i}].layer_start", stage.layer_start,
                               f"expected {expected_start} (layers must be contiguous)")
        expected_start = stage.layer_end
    if expected_start != num_layers:
        raise InvalidInput(f"stages[{len(stages) - 1}].layer_end", expected_start,
                           f"expected {num_layers} (model.num_layers)")
    if not stages[0].embeddings:
        raise InvalidInput("stages[0].embeddings", False, "the first stage holds the embeddings")
    if not stages[-1].lm_head:
        raise InvalidInput(f"stages[{len(stages) - 1}].lm_head", False,
                           "the last stage holds final norm + lm_head")

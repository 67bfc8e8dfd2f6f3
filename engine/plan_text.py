"""Plans as text for people: one plan, or both policies side by side with the difference in %.

The one place the comparison and stage rows are built: the CLI prints them as tables, the GUI
(prismn_gui.viewmodel) shows them in its panels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from engine.plan import Plan

# (label, PlanMetrics attribute, format)
METRIC_ROWS: tuple[tuple[str, str, str], ...] = (
    ("Peers used", "peers_used", "{:.0f}"),
    ("Tour km", "tour_km", "{:,.0f}"),
    ("Est. ms/token", "est_ms_per_token", "{:.1f}"),
    ("gCO2 / 1k tokens", "g_co2_per_1k_tokens", "{:.3g}"),
    ("gCO2/kWh (layer-wtd)", "avg_carbon_g_per_kwh", "{:.0f}"),
    ("VRAM utilisation", "vram_utilization", "{:.0%}"),
)
COMPARISON_LABELS = ("Feasible", *(label for label, _, _ in METRIC_ROWS))
STAGE_HEADER = ("#", "peer", "GPU", "layers", "VRAM GB", "gCO2/kWh · source", "compute ms")
MISSING = "—"


@dataclass(frozen=True)
class ComparisonRow:
    label: str
    vram: str                      # the VRAM-only baseline's value
    carbon: str                    # the carbon+distance plan's value
    diff: str                      # carbon+distance against the baseline, "+12.3%"


@dataclass(frozen=True)
class StageRow:
    index: int
    peer_id: str
    gpu: str
    layers: str                    # "0–15 (16)"
    vram: str                      # "used/free" GB
    carbon: str                    # gCO2/kWh
    source: str                    # the CarbonSource of `carbon`
    signal: str = ""               # the live signal behind `carbon` when the caller knows it ("EMaps avg 12m")
    compute: str = MISSING         # estimated compute ms per token, "m" measured by the runner / "t" GPU table

    def values(self) -> tuple[str, ...]:
        """The cells of a stage table: carbon and its signal (or source) share one column."""
        return (str(self.index), self.peer_id, self.gpu, self.layers, self.vram,
                f"{self.carbon} · {self.signal or self.source}", self.compute)


def percent_change(baseline: float, other: float) -> float | None:
    """Relative change of `other` against `baseline` in %, None when the baseline is 0."""
    if baseline == 0:
        return None
    return (other - baseline) / abs(baseline) * 100.0


def percent_text(baseline: float | None, other: float | None) -> str:
    """`other` against `baseline` as "+12.3%"; "—" when a value is missing or both are 0, "n/a" from 0."""
    if baseline is None or other is None:
        return MISSING
    change = percent_change(baseline, other)
    if change is None:
        return MISSING if other == 0 else "n/a"
    return f"{change:+.1f}%"


def shortfall_message(plan: Plan) -> str:
    """Why an infeasible plan is: the binding target when one binds, else the VRAM shortfall."""
    if plan.binding is not None:
        return f"infeasible: {plan.binding['message']}"
    gb = plan.shortfall_gb if plan.shortfall_gb is not None else float("nan")
    layers = plan.shortfall_layers if plan.shortfall_layers is not None else "?"
    return (f"infeasible: the swarm cannot hold {plan.model.name} ({plan.model.quant}): "
            f"short by {gb:.2f} GB and {layers} layer(s)")


def certificate_message(plan: Plan) -> str | None:
    """'greedy plan within 1.8 % of optimal (proven optimum)' for a plan with a certificate."""
    cert = plan.certificate
    if cert is None:
        return None
    proof = "proven optimum" if cert.get("proven_optimal") else "best bound after the time limit"
    if cert.get("gap") is None:
        return f"no greedy plan met the targets; the exact plan does ({proof})"
    return f"greedy plan within {cert['gap'] * 100:.1f} % of optimal ({proof})"


def comparison_rows(vram_plan: Plan, carbon_plan: Plan) -> tuple[ComparisonRow, ...]:
    """The rows of COMPARISON_LABELS for the two plans, feasible or not."""
    rows = [ComparisonRow("Feasible", _yes_no(vram_plan.feasible), _yes_no(carbon_plan.feasible), "")]
    for label, attr, fmt in METRIC_ROWS:
        a = getattr(vram_plan.metrics, attr) if vram_plan.metrics else None
        b = getattr(carbon_plan.metrics, attr) if carbon_plan.metrics else None
        rows.append(ComparisonRow(label, _formatted(fmt, a), _formatted(fmt, b), percent_text(a, b)))
    return tuple(rows)


def stage_rows(plan: Plan, signal_labels: Mapping[str, str] | None = None) -> tuple[StageRow, ...]:
    """Per stage: #, peer, GPU, layers, VRAM used/free, carbon and its source (or `signal_labels`'
    label for the peer), compute ms per token."""
    signal_labels = signal_labels or {}
    return tuple(
        StageRow(
            index=i,
            peer_id=s.peer_id,
            gpu=s.gpu or MISSING,
            layers=f"{s.layer_start}–{s.layer_end - 1} ({s.num_layers})",
            vram=f"{s.vram_required_gb:.1f}/{s.vram_free_gb:.1f}",
            carbon=f"{s.carbon_g_per_kwh:.0f}",
            source=s.carbon_source,
            signal=signal_labels.get(s.peer_id, ""),
            compute=MISSING if s.est_compute_ms is None else
            f"{s.est_compute_ms:.3g}{'m' if s.compute_source == 'measured' else 't'}",
        )
        for i, s in enumerate(plan.stages, start=1)
    )


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _formatted(fmt: str, value: float | None) -> str:
    return MISSING if value is None else fmt.format(value)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *map(line, rows)])


def describe_plan(plan: Plan) -> str:
    title = f"{plan.model.name} ({plan.model.quant}, {plan.model.num_layers} layers), policy {plan.policy}"
    if not plan.feasible:
        return f"{title}\n{shortfall_message(plan)}"
    m = plan.metrics
    stages = _table(STAGE_HEADER, [row.values() for row in stage_rows(plan)])
    summary = (f"{m.peers_used} peers, tour {m.tour_km:,.0f} km, {m.est_ms_per_token:.1f} ms/token, "
               f"{m.g_co2_per_1k_tokens:.3g} gCO2/1k tokens, {m.avg_carbon_g_per_kwh:.0f} gCO2/kWh, "
               f"VRAM {m.vram_utilization:.0%}")
    certificate = certificate_message(plan)
    return f"{title}\n{stages}\n{summary}" + (f"\n{certificate}" if certificate else "")


def compare_plans(vram_plan: Plan, carbon_plan: Plan) -> str:
    rows = [(r.label, r.vram, r.carbon, r.diff) for r in comparison_rows(vram_plan, carbon_plan)]
    parts = [_table(("metric", "VRAM-only", "carbon+distance", "change"), rows)]
    for name, plan in (("VRAM-only", vram_plan), ("carbon+distance", carbon_plan)):
        if plan.feasible:
            parts.append(f"\n{name}:")
            parts.append(_table(STAGE_HEADER, [row.values() for row in stage_rows(plan)]))
        else:
            parts.append(f"\n{name}: {shortfall_message(plan)}")
    certificate = certificate_message(carbon_plan)
    if certificate:
        parts.append(f"\n{certificate}")
    return "\n".join(parts)

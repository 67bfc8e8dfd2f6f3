"""Plans as text for people: one plan, or both policies side by side with the difference in %."""

from __future__ import annotations

from engine.plan import Plan

# (label, metrics attribute, format, lower_is_better)
METRIC_ROWS: tuple[tuple[str, str, str, bool], ...] = (
    ("peers used", "peers_used", "{:.0f}", True),
    ("tour km", "tour_km", "{:,.0f}", True),
    ("est. ms/token", "est_ms_per_token", "{:.1f}", True),
    ("gCO2 / 1k tokens", "g_co2_per_1k_tokens", "{:.3g}", True),
    ("avg gCO2/kWh (layer-weighted)", "avg_carbon_g_per_kwh", "{:.0f}", True),
    ("VRAM utilisation", "vram_utilization", "{:.0%}", False),
)


def percent_change(baseline: float, other: float) -> float | None:
    """Relative change of `other` against `baseline` in %, None when the baseline is 0."""
    if baseline == 0:
        return None
    return (other - baseline) / abs(baseline) * 100.0


def shortfall_message(plan: Plan) -> str:
    """Why an infeasible plan is: the binding target when one binds, else the VRAM shortfall."""
    if plan.binding is not None:
        return f"infeasible: {plan.binding['message']}"
    return (f"infeasible: the swarm is short by {plan.shortfall_gb:.2f} GB "
            f"and {plan.shortfall_layers} layer(s)")


def certificate_message(plan: Plan) -> str | None:
    """'greedy plan within 1.8 % of optimal (proven optimum)' for a plan with a certificate."""
    cert = plan.certificate
    if cert is None:
        return None
    proof = "proven optimum" if cert.get("proven_optimal") else "best bound after the time limit"
    if cert.get("gap") is None:
        return f"no greedy plan met the targets; the exact plan does ({proof})"
    return f"greedy plan within {cert['gap'] * 100:.1f} % of optimal ({proof})"


def comparison_rows(baseline: Plan, other: Plan) -> list[tuple[str, str, str, str]]:
    """Rows (label, baseline value, other value, difference) for feasible-or-not plan pairs."""
    rows = [("feasible", "yes" if baseline.feasible else "no", "yes" if other.feasible else "no", "")]
    for label, attr, fmt, _ in METRIC_ROWS:
        a = getattr(baseline.metrics, attr) if baseline.metrics else None
        b = getattr(other.metrics, attr) if other.metrics else None
        change = percent_change(a, b) if a is not None and b is not None else None
        rows.append((label,
                     fmt.format(a) if a is not None else "—",
                     fmt.format(b) if b is not None else "—",
                     f"{change:+.1f}%" if change is not None else ""))
    return rows


def stage_rows(plan: Plan) -> list[tuple[str, ...]]:
    """Per-stage rows: #, peer, GPU, layers, VRAM used/free GB, carbon and its source."""
    rows = []
    for i, s in enumerate(plan.stages, start=1):
        ends = ("E" if s.embeddings else "") + ("H" if s.lm_head else "")
        rows.append((str(i), s.peer_id, s.gpu or "?", f"{s.layer_start}-{s.layer_end - 1}{' ' + ends if ends else ''}",
                     f"{s.vram_required_gb:.1f}/{s.vram_free_gb:.1f}",
                     f"{s.carbon_g_per_kwh:.0f} ({s.carbon_source})"))
    return rows


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *map(line, rows)])


def describe_plan(plan: Plan) -> str:
    title = f"{plan.model.name} ({plan.model.quant}, {plan.model.num_layers} layers), policy {plan.policy}"
    if not plan.feasible:
        return f"{title}\n{shortfall_message(plan)}"
    m = plan.metrics
    stages = _table(("#", "peer", "GPU", "layers", "VRAM GB", "gCO2/kWh"), stage_rows(plan))
    summary = (f"{m.peers_used} peers, tour {m.tour_km:,.0f} km, {m.est_ms_per_token:.1f} ms/token, "
               f"{m.g_co2_per_1k_tokens:.3g} gCO2/1k tokens, {m.avg_carbon_g_per_kwh:.0f} gCO2/kWh, "
               f"VRAM {m.vram_utilization:.0%}")
    certificate = certificate_message(plan)
    return f"{title}\n{stages}\n{summary}" + (f"\n{certificate}" if certificate else "")


def compare_plans(vram_plan: Plan, carbon_plan: Plan) -> str:
    rows = comparison_rows(vram_plan, carbon_plan)
    parts = [_table(("metric", "VRAM-only", "carbon+distance", "change"), rows)]
    for name, plan in (("VRAM-only", vram_plan), ("carbon+distance", carbon_plan)):
        if plan.feasible:
            parts.append(f"\n{name}:")
            parts.append(_table(("#", "peer", "GPU", "layers", "VRAM GB", "gCO2/kWh"), stage_rows(plan)))
        else:
            parts.append(f"\n{name}: {shortfall_message(plan)}")
    certificate = certificate_message(carbon_plan)
    if certificate:
        parts.append(f"\n{certificate}")
    return "\n".join(parts)

"""What the "Carbon 24 h" tab says: migration proposals (saving, cost, payback) and greenest windows."""

from __future__ import annotations

import math
from datetime import datetime

from engine.plan import Plan
from engine.planning.replacement import MigrationDecision


def plan_peers(plan: Plan) -> str:
    return "+".join(s.peer_id for s in plan.stages)


def decision_from_dict(data: dict) -> MigrationDecision:
    """The inverse of MigrationDecision.to_dict (the coordinator's snapshot crosses threads as a dict)."""
    fields = {k: data[k] for k in MigrationDecision.__dataclass_fields__}
    fields["stages_to_load"] = tuple(fields["stages_to_load"])
    fields["payback_s"] = math.inf if fields["payback_s"] is None else fields["payback_s"]
    return MigrationDecision(**fields)


def proposal_text(decision: MigrationDecision, rate_text: str) -> str:
    if not decision.migrate:
        return f"Stay: {decision.reason}."
    return (f"Proposal: move to {', '.join(decision.stages_to_load)} — saves {decision.saving_fraction:.0%} "
            f"({decision.current_g_per_1k_tokens:.3f} → {decision.candidate_g_per_1k_tokens:.3f} gCO2/1k tokens, "
            f"{decision.saving_g_per_h:.1f} g/h at the {rate_text} rate); cost {decision.migration_g:.2f} g "
            f"({decision.load_gb:.1f} GB in {decision.migration_s:.0f} s); payback {duration(decision.payback_s)} "
            f"within {decision.horizon_h:g} h. Estimates.")


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def window_text(choice, now: datetime) -> str:
    wait_h = (choice.start - now).total_seconds() / 3600
    when = "now" if wait_h < 0.05 else f"{choice.start:%H:%M} UTC (in {wait_h:.1f} h)"
    basis = "" if choice.known else " — no forecast: values held flat"
    return (f"Start {when} on {plan_peers(choice.plan)}: {choice.grams:.1f} g vs {choice.grams_now:.1f} g now "
            f"(saves {choice.saving_fraction:.0%}); runs {choice.run_h:.1f} h. Estimate{basis}.")

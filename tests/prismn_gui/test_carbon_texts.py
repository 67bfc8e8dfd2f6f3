"""What the app says about carbon signals, proposals and windows (no window needed)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from engine.carbon_values import CarbonSignal, CarbonSource, SignalKind
from engine.planning.replacement import MigrationDecision
from prismn_gui.carbon_signals import signal_hover, signal_label
from prismn_gui.carbon_texts import decision_from_dict, proposal_text

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def test_a_signal_reads_source_kind_and_age() -> None:
    live = CarbonSignal(212.0, CarbonSource.ELECTRICITYMAPS, SignalKind.AVERAGE, NOW - timedelta(minutes=12), -0.2, "DE")
    assert signal_label(live, NOW) == "EMaps avg 12m"
    marginal = CarbonSignal(450.0, CarbonSource.WATTTIME, SignalKind.MARGINAL, NOW + timedelta(hours=3), 3.0, "CAISO")
    assert signal_label(marginal, NOW) == "WattTime marg in 3h"
    yearly = CarbonSignal(31.0, CarbonSource.COUNTRY, SignalKind.AVERAGE, detail="FR yearly average (offline)")
    assert signal_label(yearly, NOW) == "country avg yr"
    assert signal_hover(yearly, NOW) == "31 gCO2/kWh average from country (offline), FR yearly average (offline); yearly"
    stated = CarbonSignal(12.0, CarbonSource.EXPLICIT, SignalKind.AVERAGE, detail="stated by the peer")
    assert signal_label(stated, NOW) == "stated avg"
    assert signal_hover(stated, NOW) == "12 gCO2/kWh average from explicit, stated by the peer"


def test_a_proposal_states_saving_cost_and_payback_and_survives_the_thread_crossing() -> None:
    decision = MigrationDecision(True, "saves", 2.0, 0.5, 0.75, 120.0, 0.4, 30.0, 16.1, 12.0, 1.0, 119.6, ("madrid",))
    text = proposal_text(decision, "measured")
    assert text.startswith("Proposal: move to madrid — saves 75%")
    assert "cost 0.40 g" in text and "16.1 GB in 30 s" in text and "payback 12 s" in text
    assert decision_from_dict(decision.to_dict()) == decision
    stay = MigrationDecision(False, "saving 3.0% is below the 10% threshold", 1, 1, 0, 0, 0, 0, 0, math.inf, 1, 0, ())
    assert proposal_text(stay, "measured") == "Stay: saving 3.0% is below the 10% threshold."
    assert decision_from_dict(stay.to_dict()) == stay

"""The soak (benchmarks/soak.py) in small, on the tiny Llama: 8 requests from 2 clients through the
OpenAI-style API over 4 runners with emulated WAN, one of the deployment's runners SIGKILLed while
they run and started again. Nothing is lost, streamed text never repeats, every answer is the
monolithic model's (greedy, or sampled with the request's seed), and the death is noticed within 3 s.
"""

from __future__ import annotations

import pytest

from benchmarks.soak import DETECTION_GOAL_S, run_soak

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_a_runner_killed_under_load_loses_no_request_and_repeats_no_token(tiny_model, tmp_path):
    report = run_soak(str(tiny_model), requests=8, clients=2, kills=1, seed=7, max_tokens=64, log_dir=tmp_path,
                      pause_s=(0.3, 0.8), rejoin_s=(0.5, 1.0))
    assert report["lost"] == 0, report["errors"]
    assert report["completed"] == report["requests"] == 8
    assert report["identical"] == 8, report["differing"]
    assert report["identical_greedy"] == 4 and report["identical_sampled"] == 4
    assert report["streamed"] == 4 and report["duplicated_tokens"] == 0
    (kill,) = report["kills"]
    assert kill["in_flight"] >= 1, report                    # the kill really hit requests under way
    assert kill["detection_s"] is not None and kill["detection_s"] <= DETECTION_GOAL_S
    assert kill["recovery_s"] is not None and kill["victim"] not in kill["redeployed_on"]
    assert kill["rejoined_s"] is not None                     # it came back, as a spare
    assert report["requests_recovered"] >= 1, report          # and they lived through the failover

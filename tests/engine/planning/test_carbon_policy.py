"""On the shipped demo swarm, the carbon+distance policy does what its name promises."""

import pytest

from engine.model import footprint, load_spec
from engine.planning.planner import plan_both
from engine.planning.types import Weights
from engine.swarm import DEMO_SWARM_PATH, load_swarm


@pytest.fixture(scope="module")
def demo():
    return load_swarm(DEMO_SWARM_PATH)


@pytest.mark.parametrize("model", ["llama-3.1-8b", "qwen2.5-7b", "mixtral-8x7b", "llama-3.1-70b"])
@pytest.mark.parametrize("weights", [Weights(1, 0, 0), Weights(0.6, 0.3, 0.1)])
def test_weighting_carbon_emits_less_than_the_vram_baseline(demo, model, weights):
    vram_plan, carbon_plan = plan_both(footprint(load_spec(model)), demo.peers, demo.ingress, weights)
    assert carbon_plan.feasible and vram_plan.feasible
    assert carbon_plan.metrics.g_co2_per_1k_tokens < vram_plan.metrics.g_co2_per_1k_tokens


@pytest.mark.parametrize("model", ["llama-3.1-8b", "llama-3.1-70b"])
def test_weighting_distance_gives_a_shorter_tour_than_weighting_carbon(demo, model):
    fp = footprint(load_spec(model))
    _, by_carbon = plan_both(fp, demo.peers, demo.ingress, Weights(1, 0, 0))
    _, by_distance = plan_both(fp, demo.peers, demo.ingress, Weights(0, 1, 0))
    assert by_distance.metrics.tour_km < by_carbon.metrics.tour_km
    assert by_distance.metrics.est_ms_per_token < by_carbon.metrics.est_ms_per_token

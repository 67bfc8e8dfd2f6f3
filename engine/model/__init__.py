"""Model sizing: HF configs -> ModelSpec -> exact parameter counts, bytes and FLOPs per layer."""

from engine.model.footprint import ModelFootprint
from engine.model.loading import list_presets, load_spec
from engine.model.sizing import QUANTS, footprint
from engine.model.spec import ModelSpec, spec_from_config
from engine.model.summary import inspect_model

__all__ = [
    "QUANTS",
    "ModelFootprint",
    "ModelSpec",
    "footprint",
    "inspect_model",
    "list_presets",
    "load_spec",
    "spec_from_config",
]

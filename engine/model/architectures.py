"""Which model architectures Prismn sizes AND its runners execute: the one list. Pure.

A `model_type` here is planned by engine.model (parameter and byte sizing) and executed by
engine.runner.shards from transformers' own decoder-layer / norm / rotary classes. Anything else is
refused when it is planned or deployed, never half-way through a deployment.
"""

from __future__ import annotations

from engine.errors import InvalidInput

# model_type -> whether tie_word_embeddings defaults to True (transformers' config defaults).
TIED_BY_DEFAULT: dict[str, bool] = {
    "llama": False,
    "mistral": False,
    "qwen2": False,
    "gemma": True,
    "gemma2": True,
    "phi3": False,
    "mixtral": False,
}
EXECUTABLE_MODEL_TYPES: tuple[str, ...] = tuple(TIED_BY_DEFAULT)


def check_executable(model_type: object) -> str:
    """`model_type` itself, or InvalidInput naming it when the runners cannot execute it."""
    if not isinstance(model_type, str) or model_type not in TIED_BY_DEFAULT:
        raise InvalidInput("model_type", model_type,
                           f"the runners cannot execute this architecture; they run "
                           f"{', '.join(EXECUTABLE_MODEL_TYPES)}")
    return model_type  # type: ignore[return-value]

"""Domain errors that carry their facts, so every shell can report them precisely."""

from __future__ import annotations


class PrismnError(Exception):
    """Base of every error Prismn raises on purpose."""


class InvalidInput(PrismnError, ValueError):
    """A value from outside (a peers file, a CLI flag, a frame, a config) is not acceptable.

    `field` names where the value came from (for example ``peers[3].lat``), `value` is the
    offending value, `reason` says what was expected.
    """

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{field}={value!r}: {reason}")


class UnknownModel(InvalidInput):
    """A model name that is neither a preset, a config file/folder, nor a reachable hub id."""

    def __init__(self, value: str, reason: str) -> None:
        super().__init__("model", value, reason)


class InfeasiblePlan(PrismnError):
    """The swarm cannot hold the model in whole layers.

    `shortfall_gb` is how much more free VRAM the swarm would need, `shortfall_layers` how many
    decoder layers are left without a peer once every peer is filled.
    """

    def __init__(self, shortfall_gb: float, shortfall_layers: int, detail: str = "") -> None:
        self.shortfall_gb = shortfall_gb
        self.shortfall_layers = shortfall_layers
        self.detail = detail
        message = (
            f"the swarm cannot hold the model: short by {shortfall_gb:.2f} GB "
            f"and {shortfall_layers} layer(s)"
        )
        super().__init__(f"{message} ({detail})" if detail else message)

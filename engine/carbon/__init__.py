"""Carbon intensity per peer: explicit values, Electricity Maps live, offline tables, lookup by location.

A shell: used by engine.swarm, the GUI and the coordinator, never by the planning core.
"""

from engine.carbon.resolver import TOKEN_ENV, CarbonResolver

__all__ = ["TOKEN_ENV", "CarbonResolver"]

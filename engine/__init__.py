"""Prismn placement engine: place a language model across a swarm of GPU peers."""

GB = 2**30
"""Bytes in one "GB" throughout Prismn. VRAM is reported by NVML in bytes and sold in GiB,
so GB here means GiB (2**30 bytes) everywhere: plans, peers files, the GUI."""

"""Load one pipeline stage: only the tensors of its layer range, built from transformers' own classes.

A stage holds decoder layers [layer_start, layer_end) of the model, plus `model.embed_tokens` when it
is the first stage and `model.norm` + `lm_head` when it is the last (with tied embeddings the last
stage reads `model.embed_tokens.weight` as the lm_head weight). The modules are the model's own
decoder-layer / RMSNorm / rotary classes, so a pipeline of stages computes what the monolithic model
computes. Weights are read tensor by tensor with `safetensors.safe_open`; nothing else is touched.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from engine.errors import InvalidInput

# model_type -> (modeling module, class-name prefix). Each has <P>DecoderLayer, <P>RMSNorm, <P>RotaryEmbedding.
ARCHITECTURES: dict[str, tuple[str, str]] = {
    "llama": ("transformers.models.llama.modeling_llama", "Llama"),
    "mistral": ("transformers.models.mistral.modeling_mistral", "Mistral"),
    "qwen2": ("transformers.models.qwen2.modeling_qwen2", "Qwen2"),
}

DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32, "float32": torch.float32,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16,
}

ProgressFn = Callable[[int, int], None]     # (bytes loaded so far, total bytes of this stage)


@dataclass(frozen=True)
class StageLayout:
    layer_start: int                 # inclusive
    layer_end: int                   # exclusive
    num_layers: int                  # of the whole model
    tied_embeddings: bool

    @property
    def first(self) -> bool:
        return self.layer_start == 0

    @property
    def last(self) -> bool:
        return self.layer_end == self.num_layers

    def tensor_sources(self, available: set[str]) -> dict[str, str]:
        """Stage-module parameter name -> checkpoint tensor name, for exactly this stage's tensors."""
        wanted: dict[str, str] = {}
        for name in available:
            if name.startswith("model.layers."):
                index = int(name.split(".")[2])
                if self.layer_start <= index < self.layer_end:
                    rest = name.split(".", 3)[3]
                    wanted[f"layers.{index - self.layer_start}.{rest}"] = name
        if self.first:
            wanted["embed_tokens.weight"] = "model.embed_tokens.weight"
        if self.last:
            wanted["norm.weight"] = "model.norm.weight"
            has_head = "lm_head.weight" in available
            wanted["lm_head.weight"] = "lm_head.weight" if has_head else "model.embed_tokens.weight"
        missing = sorted(src for src in wanted.values() if src not in available)
        if missing:
            raise InvalidInput("checkpoint", missing[:5], "tensors missing from the safetensors files")
        return wanted


def parse_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise InvalidInput("dtype", dtype, f"expected one of {sorted(set(DTYPES))} (int8/int4 run as bf16 "
                                           "weights are not supported by the runner yet)")
    return DTYPES[dtype]


def parse_layers(text: str, num_layers: int | None = None) -> tuple[int, int]:
    """'A:B' -> (A, B), checked against the model's layer count when known."""
    start_text, sep, end_text = str(text).partition(":")
    if not sep or not start_text.strip().isdigit() or not end_text.strip().isdigit():
        raise InvalidInput("layers", text, "expected A:B with integers 0 <= A < B")
    start, end = int(start_text), int(end_text)
    if not 0 <= start < end:
        raise InvalidInput("layers", text, "expected A:B with integers 0 <= A < B")
    if num_layers is not None and end > num_layers:
        raise InvalidInput("layers", text, f"the model has {num_layers} layers (end must be <= {num_layers})")
    return start, end


def load_config(folder: Path):
    """The transformers config of a supported architecture, or InvalidInput naming the architecture."""
    from transformers import AutoConfig

    raw = json.loads((Path(folder) / "config.json").read_text())
    model_type = raw.get("model_type")
    if model_type not in ARCHITECTURES:
        raise InvalidInput("architecture", model_type,
                           f"unsupported architecture {model_type}; supported: {', '.join(sorted(ARCHITECTURES))}")
    config = AutoConfig.from_pretrained(str(folder))
    # Same attention kernel as the monolithic model on CPU and GPU, so results match bit for bit-ish.
    config._attn_implementation = "sdpa"
    return config


class StageModule(nn.Module):
    """Decoder layers of one stage (+ embeddings / final norm + lm_head on the ends)."""

    def __init__(self, config, layout: StageLayout) -> None:
        super().__init__()
        module_name, prefix = ARCHITECTURES[config.model_type]
        modeling = importlib.import_module(module_name)
        decoder_cls = getattr(modeling, f"{prefix}DecoderLayer")
        norm_cls = getattr(modeling, f"{prefix}RMSNorm")
        self.config = config
        self.layout = layout
        self.embed_tokens = (nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
                             if layout.first else None)
        # Built with the GLOBAL index (per-layer settings such as sliding windows follow it), then the
        # attention's cache slot is renumbered to the stage-local index of this stage's own KV cache.
        self.layers = nn.ModuleList(decoder_cls(config, index)
                                    for index in range(layout.layer_start, layout.layer_end))
        for local, layer in enumerate(self.layers):
            layer.self_attn.layer_idx = local
        if layout.last:
            self.norm = norm_cls(config.hidden_size, eps=config.rms_norm_eps)
            self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        else:
            self.norm = None
            self.lm_head = None
        self.layer_types = _layer_types(config)[layout.layer_start:layout.layer_end]


def _layer_types(config) -> list[str]:
    types = getattr(config, "layer_types", None)
    if types:
        return list(types)
    sliding = getattr(config, "sliding_window", None) is not None and config.model_type == "mistral"
    return ["sliding_attention" if sliding else "full_attention"] * config.num_hidden_layers


def make_rotary(config, device: torch.device):
    module_name, prefix = ARCHITECTURES[config.model_type]
    rotary_cls = getattr(importlib.import_module(module_name), f"{prefix}RotaryEmbedding")
    return rotary_cls(config=config).to(device)


def checkpoint_index(folder: Path) -> dict[str, Path]:
    """Tensor name -> safetensors file, from the index when sharded, else from each file's header."""
    folder = Path(folder)
    index_file = folder / "model.safetensors.index.json"
    if index_file.is_file():
        weight_map = json.loads(index_file.read_text())["weight_map"]
        return {name: folder / file for name, file in weight_map.items()}
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise InvalidInput("model", str(folder), "no *.safetensors files")
    where: dict[str, Path] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():
                where[name] = file
    return where


def load_stage(folder: Path, layer_start: int, layer_end: int, dtype: str = "fp32",
               device: str | torch.device | None = None, progress: ProgressFn | None = None) -> StageModule:
    """Build stage [layer_start, layer_end) reading only its tensors; `progress(bytes_done, bytes_total)`."""
    config = load_config(folder)
    torch_dtype = parse_dtype(dtype)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if not 0 <= layer_start < layer_end <= config.num_hidden_layers:
        raise InvalidInput("layers", f"{layer_start}:{layer_end}",
                           f"expected 0 <= A < B <= {config.num_hidden_layers} (the model's layer count)")
    layout = StageLayout(layer_start, layer_end, config.num_hidden_layers,
                         bool(getattr(config, "tie_word_embeddings", False)))
    where = checkpoint_index(folder)
    sources = layout.tensor_sources(set(where))
    with torch.device("meta"):
        stage = StageModule(config, layout)

    total_bytes = _stored_bytes(sources, where)
    done_bytes = 0
    state: dict[str, torch.Tensor] = {}
    by_file: dict[Path, list[tuple[str, str]]] = {}
    for target, source in sorted(sources.items()):
        by_file.setdefault(where[source], []).append((target, source))
    if progress:
        progress(0, total_bytes)
    for file, pairs in by_file.items():
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            for target, source in pairs:
                tensor = handle.get_tensor(source)
                done_bytes += tensor.numel() * tensor.element_size()
                state[target] = tensor.to(device=device, dtype=torch_dtype)
                if progress:
                    progress(done_bytes, total_bytes)
    # assign=True keeps our freshly read tensors instead of copying into meta placeholders.
    stage.load_state_dict(state, strict=True, assign=True)
    stage.rotary_emb = make_rotary(config, device)
    stage.eval()
    return stage


def _stored_bytes(sources: dict[str, str], where: dict[str, Path]) -> int:
    total = 0
    by_file: dict[Path, set[str]] = {}
    for source in sources.values():
        by_file.setdefault(where[source], set()).add(source)
    for file, names in by_file.items():
        with safe_open(str(file), framework="pt") as handle:
            for name in names:
                piece = handle.get_slice(name)
                count = 1
                for dim in piece.get_shape():
                    count *= dim
                total += count * _dtype_bytes(piece.get_dtype())
    return total


def _dtype_bytes(safetensors_dtype: str) -> int:
    return {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
            "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}.get(safetensors_dtype, 4)

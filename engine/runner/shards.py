"""Load one pipeline stage: only the tensors of its layer range, built from transformers' own classes.

A stage holds decoder layers [layer_start, layer_end) of the model, plus `model.embed_tokens` when it
is the first stage and `model.norm` + `lm_head` when it is the last (with tied embeddings the last
stage reads `model.embed_tokens.weight` as the lm_head weight). The modules are taken from the
model's own `*ForCausalLM` class, built on the meta device (no memory) and driven generically, so a
pipeline of stages computes what the monolithic model computes for every architecture in
`engine.model.architectures.EXECUTABLE_MODEL_TYPES`. What differs at the model level is handled here,
once: Gemma's scaled embeddings (its embedding module's non-persistent scale), Gemma-2's final logit
soft-capping, the per-layer attention type (sliding window or full), and Mixtral's experts, which
checkpoints store one matrix per expert (w1/w3/w2) while transformers 5 holds them fused.

Steps: read config -> map checkpoint tensors to stage parameters -> build the skeleton on meta ->
per module: read its tensors, cast to the compute dtype, assign, quantise (int8/int4) -> rotary.
Weights are read tensor by tensor with `safetensors.safe_open`; nothing else is touched.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from engine.errors import InvalidInput
from engine.model.architectures import check_executable
from engine.runner.quantize import check_quant, compute_dtype_name, quantize_linears

DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32, "float32": torch.float32,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16,
}

ProgressFn = Callable[[int, int], None]     # (bytes loaded so far, total bytes of this stage)
# Stage parameter -> (checkpoint tensors it is made of, how to combine them).
Combine = Callable[[list[torch.Tensor]], torch.Tensor]


def _single(tensors: list[torch.Tensor]) -> torch.Tensor:
    return tensors[0]


@dataclass(frozen=True)
class StageLayout:
    layer_start: int                 # inclusive
    layer_end: int                   # exclusive
    num_layers: int                  # of the whole model
    tied_embeddings: bool
    num_experts: int = 0             # Mixtral: experts per layer (checkpoints store them one by one)

    @property
    def first(self) -> bool:
        return self.layer_start == 0

    @property
    def last(self) -> bool:
        return self.layer_end == self.num_layers

    def tensor_plan(self, available: set[str]) -> dict[str, tuple[tuple[str, ...], Combine]]:
        """Stage-module parameter name -> (checkpoint tensors, combine), for exactly this stage."""
        wanted: dict[str, tuple[tuple[str, ...], Combine]] = {}
        for name in available:
            if name.startswith("model.layers."):
                index = int(name.split(".")[2])
                if self.layer_start <= index < self.layer_end and ".block_sparse_moe.experts." not in name:
                    rest = name.split(".", 3)[3].replace("block_sparse_moe.gate.", "mlp.gate.")
                    wanted[f"layers.{index - self.layer_start}.{rest}"] = ((name,), _single)
        if self.num_experts:
            for index in range(self.layer_start, self.layer_end):
                wanted.update(self._expert_sources(index, available))
        if self.first:
            wanted["embed_tokens.weight"] = (("model.embed_tokens.weight",), _single)
        if self.last:
            wanted["norm.weight"] = (("model.norm.weight",), _single)
            has_head = "lm_head.weight" in available
            wanted["lm_head.weight"] = (("lm_head.weight" if has_head else "model.embed_tokens.weight",), _single)
        missing = sorted({src for sources, _ in wanted.values() for src in sources} - available)
        if missing:
            raise InvalidInput("checkpoint", missing[:5], "tensors missing from the safetensors files")
        return wanted

    def _expert_sources(self, index: int, available: set[str]) -> dict[str, tuple[tuple[str, ...], Combine]]:
        """Mixtral experts: transformers 5 holds them fused as gate_up_proj [E, 2I, H] (w1 rows, then
        w3 rows) and down_proj [E, H, I] (w2); checkpoints store w1/w2/w3 per expert."""
        local = f"layers.{index - self.layer_start}.mlp.experts"
        fused = f"model.layers.{index}.mlp.experts"
        if f"{fused}.gate_up_proj" in available:          # already saved in the fused layout
            return {f"{local}.gate_up_proj": ((f"{fused}.gate_up_proj",), _single),
                    f"{local}.down_proj": ((f"{fused}.down_proj",), _single)}
        experts = [f"model.layers.{index}.block_sparse_moe.experts.{e}" for e in range(self.num_experts)]
        gate_up = tuple(name for e in experts for name in (f"{e}.w1.weight", f"{e}.w3.weight"))

        def stack_pairs(tensors: list[torch.Tensor]) -> torch.Tensor:
            return torch.stack([torch.cat(tensors[i:i + 2], dim=0) for i in range(0, len(tensors), 2)])

        return {f"{local}.gate_up_proj": (gate_up, stack_pairs),
                f"{local}.down_proj": (tuple(f"{e}.w2.weight" for e in experts), torch.stack)}


def parse_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise InvalidInput("dtype", dtype, f"expected a compute dtype, one of {sorted(set(DTYPES))} "
                                           "(int8/int4 are weight quantisations: use --quant)")
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
    """The transformers config of an executable architecture, or InvalidInput naming its model_type."""
    from transformers import AutoConfig

    raw = json.loads((Path(folder) / "config.json").read_text())
    check_executable(raw.get("model_type"))
    return AutoConfig.from_pretrained(str(folder))


def layer_types(config) -> list[str]:
    """Per decoder layer, "sliding_attention" or "full_attention", as the monolithic model masks it:
    the config's `layer_types` (Gemma-2, Qwen2), else every layer slides when `sliding_window` is set
    (Mistral, Mixtral, Phi-3), else full (Llama, Gemma)."""
    types = getattr(config, "layer_types", None)
    if types:
        return list(types)
    sliding = getattr(config, "sliding_window", None) is not None
    return ["sliding_attention" if sliding else "full_attention"] * config.num_hidden_layers


class StageModule(nn.Module):
    """Decoder layers of one stage (+ embeddings / final norm + lm_head on the ends).

    Build it under `torch.device("meta")`: the whole `*ForCausalLM` skeleton costs no memory there,
    and only this stage's modules are kept.
    """

    def __init__(self, config, layout: StageLayout) -> None:
        super().__init__()
        from transformers import AutoModelForCausalLM

        skeleton = AutoModelForCausalLM.from_config(config)     # also settles config._attn_implementation
        base = skeleton.model
        self.config = config
        self.layout = layout
        self.embed_tokens = base.embed_tokens if layout.first else None
        # Built with the GLOBAL index (per-layer settings such as sliding windows follow it), then the
        # attention's cache slot is renumbered to the stage-local index of this stage's own KV cache.
        self.layers = nn.ModuleList(base.layers[layout.layer_start:layout.layer_end])
        for local, layer in enumerate(self.layers):
            layer.self_attn.layer_idx = local
        self.norm = base.norm if layout.last else None
        self.lm_head = skeleton.lm_head if layout.last else None
        self.layer_types = layer_types(config)[layout.layer_start:layout.layer_end]
        self.rotary_cls = type(base.rotary_emb)
        self.final_logit_softcapping = getattr(config, "final_logit_softcapping", None)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final norm, lm_head and (Gemma-2) soft-capping, as `*ForCausalLM.forward` does."""
        logits = self.lm_head(self.norm(hidden))
        cap = self.final_logit_softcapping
        if cap is not None:
            logits = torch.tanh(logits / cap) * cap
        return logits


def make_rotary(stage: StageModule, device: torch.device) -> nn.Module:
    return stage.rotary_cls(config=stage.config).to(device)


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


def load_stage(folder: Path, layer_start: int, layer_end: int, dtype: str | None = None,
               device: str | torch.device | None = None, progress: ProgressFn | None = None,
               quant: str | None = None) -> StageModule:
    """Build stage [layer_start, layer_end) reading only its tensors; `progress(bytes_done, bytes_total)`.

    `quant` is how the weights are held (fp32 | bf16 | fp16 | int8 | int4; default: `dtype`, else fp32),
    `dtype` the compute dtype (activations, KV cache, norms; default: what the planner assumes for
    `quant`, engine.model.sizing.compute_dtype_for). int8/int4 quantise each module's Linear weights
    right after they are read, so at most one module is held unquantised at a time.
    """
    config = load_config(folder)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    quant = check_quant(quant or dtype or "fp32", dtype, device.type)
    torch_dtype = parse_dtype(compute_dtype_name(quant, dtype))
    if not 0 <= layer_start < layer_end <= config.num_hidden_layers:
        raise InvalidInput("layers", f"{layer_start}:{layer_end}",
                           f"expected 0 <= A < B <= {config.num_hidden_layers} (the model's layer count)")
    layout = StageLayout(layer_start, layer_end, config.num_hidden_layers,
                         bool(getattr(config, "tie_word_embeddings", False)),
                         int(getattr(config, "num_local_experts", 0) or 0) if config.model_type == "mixtral" else 0)
    where = checkpoint_index(folder)
    plan = layout.tensor_plan(set(where))
    with torch.device("meta"):
        stage = StageModule(config, layout)
    if quant == "int8" and layout.num_experts:
        # transformers' grouped_mm experts kernel has no int8 weights; its per-expert loop does.
        config._experts_implementation = "eager"
    if layout.first and layout.last and layout.tied_embeddings and quant in ("fp32", "bf16", "fp16"):
        del plan["lm_head.weight"]          # one matrix serves both ends, as in the monolithic model

    total_bytes = _stored_bytes({s for sources, _ in plan.values() for s in sources}, where)
    done = 0
    if progress:
        progress(0, total_bytes)
    with ExitStack() as files:
        handles: dict[Path, object] = {}
        for prefix, targets in _by_module(plan).items():
            state = {}
            for target in targets:
                sources, combine = plan[target]
                tensors = []
                for source in sources:
                    file = where[source]
                    if file not in handles:
                        handles[file] = files.enter_context(safe_open(str(file), framework="pt", device="cpu"))
                    tensor = handles[file].get_tensor(source)
                    done += tensor.numel() * tensor.element_size()
                    tensors.append(tensor)
                state[target[len(prefix) + 1:]] = combine(tensors).to(device=device, dtype=torch_dtype)
                if progress:
                    progress(done, total_bytes)
            # assign=True keeps our freshly read tensors instead of copying into meta placeholders.
            module = stage.get_submodule(prefix)
            module.load_state_dict(state, strict=False, assign=True)
            quantize_linears(module, quant, device.type)
    if "lm_head.weight" not in plan and stage.lm_head is not None:
        stage.lm_head.weight = stage.embed_tokens.weight
    _materialise_buffers(stage, device)
    stage.rotary_emb = make_rotary(stage, device)
    stage.quant = quant
    stage.compute_dtype = torch_dtype
    stage.eval()
    return stage


def _by_module(plan: dict) -> dict[str, list[str]]:
    """Targets grouped by the module that is loaded (and quantised) as one: a decoder layer or an end."""
    groups: dict[str, list[str]] = {}
    for target in sorted(plan):
        parts = target.split(".")
        prefix = ".".join(parts[:2]) if parts[0] == "layers" else parts[0]
        groups.setdefault(prefix, []).append(target)
    return groups


def _materialise_buffers(stage: StageModule, device: torch.device) -> None:
    """Non-persistent buffers are not in checkpoints and were left on meta: rebuild the known ones."""
    for name, param in stage.named_parameters():
        if param.is_meta:
            raise InvalidInput("checkpoint", name, "tensor missing from the safetensors files")
    for module_name, module in stage.named_modules():
        for name, buffer in list(module.named_buffers(recurse=False)):
            if not buffer.is_meta:
                continue
            if name == "embed_scale" and hasattr(module, "scalar_embed_scale"):
                # Gemma: sqrt(hidden_size), applied in the embedding dtype as the monolithic model does.
                module.embed_scale = torch.tensor(module.scalar_embed_scale, device=device)
            else:
                raise InvalidInput("architecture", f"{module_name}.{name}",
                                   "a non-persistent buffer this loader does not know how to build")


def _stored_bytes(names: set[str], where: dict[str, Path]) -> int:
    total = 0
    by_file: dict[Path, set[str]] = {}
    for name in names:
        by_file.setdefault(where[name], set()).add(name)
    for file, file_names in by_file.items():
        with safe_open(str(file), framework="pt") as handle:
            for name in file_names:
                piece = handle.get_slice(name)
                total += math.prod(piece.get_shape()) * _dtype_bytes(piece.get_dtype())
    return total


def _dtype_bytes(safetensors_dtype: str) -> int:
    return {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
            "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}.get(safetensors_dtype, 4)

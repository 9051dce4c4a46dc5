"""Open-Unmix checkpoints: per-target ``<target>[-hash].pth`` state dicts (a folder of them, or one file)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from stemforge.errors import ModelError
from stemforge.models.base import StemModel
from stemforge.models.compat.io import torch_load

_UMX_ORDER = ("vocals", "drums", "bass", "other")


def detect(path: Path) -> bool:
    """A ``.pth`` file, or a folder holding one."""
    return any(path.glob("*.pth")) if path.is_dir() else path.suffix.lower() == ".pth"


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
    states = {t: torch_load(f) for t, f in files.items()}
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
            try:
                meta = json.loads(meta_file.read_text())
            except (OSError, ValueError) as exc:
                raise ModelError(f"cannot read Open-Unmix settings {meta_file}: {str(exc).splitlines()[0][:200]}") from exc
            if not isinstance(meta, dict):
                raise ModelError(f"Open-Unmix settings are not a JSON object: {meta_file}")
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


load = load_openunmix

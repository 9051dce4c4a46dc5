"""MDX-Net checkpoints: an ``.onnx`` graph with its STFT settings in ``<name>.json`` / ``<name>.yaml`` beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stemforge.errors import ModelError
from stemforge.models.base import StemModel


def detect(path: Path) -> bool:
    """An ``.onnx`` file."""
    return not path.is_dir() and path.suffix.lower() == ".onnx"


def load_mdxnet(path: str | Path, **settings: Any) -> StemModel:
    """An MDX-Net ``.onnx`` graph; STFT settings from ``<name>.json`` / ``<name>.yaml`` beside it, or ``settings``."""
    from stemforge.models.compat.mdxnet import MDXNetONNX, mdxnet_config_from

    path = Path(path)
    sidecar: dict[str, Any] = {}
    for candidate in (path.with_suffix(".json"), path.with_suffix(".yaml")):
        if candidate.is_file():
            import yaml

            try:
                sidecar = dict(yaml.safe_load(candidate.read_text()) or {})  # JSON is YAML
            except (yaml.YAMLError, TypeError, ValueError) as exc:
                raise ModelError(f"cannot read MDX-Net settings {candidate}") from exc
            break
    sidecar.update(settings)
    return MDXNetONNX(mdxnet_config_from(path, sidecar)).eval()


load = load_mdxnet

"""demucs checkpoints: ``.th`` model packages (HTDemucs / HDemucs), bags of them named by a ``.yaml``."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

from stemforge.errors import ModelError
from stemforge.models.base import StemModel
from stemforge.models.bounded import build_within
from stemforge.models.compat.io import read_torch_pickle


def detect(path: Path) -> bool:
    """A ``.th`` package, a bag ``.yaml``, or a folder holding both."""
    if path.is_dir():
        return any(path.glob("*.yaml")) and any(path.glob("*.th"))
    return path.suffix.lower() in (".th", ".yaml", ".yml")


class DemucsClass:
    """Harmless stand-in for the model class a demucs package names (``demucs.htdemucs.HTDemucs``).

    Packages pickle their class by reference; we map each known name to a subclass of this one, so the name is
    all that is read and demucs need not be installed. Nothing in it runs code.
    """

    qualified_name = ""


#: Classes real demucs packages name; HTDemucs / HDemucs load, the others get a clear "not supported".
_DEMUCS_CLASS_NAMES = ("demucs.htdemucs.HTDemucs", "demucs.hdemucs.HDemucs", "demucs.demucs.Demucs",
                       "demucs.tasnet.ConvTasNet", "demucs.tasnet_v2.ConvTasNet", "demucs.wdemucs.WDemucs")
_DEMUCS_STAND_INS = [
    (type(name.rsplit(".", 1)[1], (DemucsClass,), {"__module__": __name__, "qualified_name": name}), name)
    for name in _DEMUCS_CLASS_NAMES
]
_FRACTION_TEXT = re.compile(r"[+-]?\d{1,40}(/\d{1,40})?|[+-]?\d{0,40}\.\d{1,40}")


def _fraction(numerator: int | str = 0, denominator: int | None = None) -> Fraction:
    """``fractions.Fraction`` as pickled by Python (``(num, den)``, or ``"39/5"`` before 3.11), bounded.

    ``Fraction("1e999999999")`` would compute a huge power of ten; only plain integers and short
    ``a/b`` / decimal strings are accepted.
    """
    if isinstance(numerator, str) and denominator is None and _FRACTION_TEXT.fullmatch(numerator):
        return Fraction(numerator)
    if type(numerator) is int and (denominator is None or type(denominator) is int):
        return Fraction(numerator, 1 if denominator is None else denominator)
    raise ValueError(f"unexpected Fraction arguments {numerator!r:.40}, {denominator!r:.40}")


_PACKAGE_GLOBALS = [*_DEMUCS_STAND_INS, (_fraction, "fractions.Fraction")]


def _read_demucs_package(path: Path) -> dict[str, Any]:
    package = read_torch_pickle(path, "demucs model package", safe_globals=_PACKAGE_GLOBALS)
    if not isinstance(package, dict) or not {"klass", "kwargs", "state"} <= set(package):
        raise ModelError(f"not a demucs model package (no klass/kwargs/state): {path}")
    if not isinstance(package["kwargs"], dict) or not isinstance(package["state"], dict) \
            or not isinstance(package.get("args") or (), (tuple, list)):
        raise ModelError(f"not a demucs model package (malformed args/kwargs/state): {path}")
    return package


#: demucs constructor arguments that only matter for training (or are fixed by our implementation).
_DEMUCS_TRAINING_ONLY = {
    "wiener_iters", "end_iters", "wiener_residual", "emb_smooth", "rescale", "t_dropout", "t_max_positions",
    "t_weight_decay", "t_lr", "t_sin_random_shift", "t_cape_mean_normalize", "t_cape_augment",
    "t_cape_glob_loc_scale", "t_mask_type", "t_mask_random_seed", "t_sparse_attn_window", "t_global_window",
    "t_sparsity", "t_auto_sparsity", "multi_freqs_depth",
}


def _demucs_config(klass: str, args: tuple, kwargs: dict[str, Any], path: Path) -> tuple[type, Any]:
    from stemforge.models.compat.hdemucs import HDemucs
    from stemforge.models.compat.htdemucs import HTDemucs

    classes = {"HTDemucs": HTDemucs, "HDemucs": HDemucs}
    cls = classes.get(klass)
    if cls is None:
        raise ModelError(f"demucs model class {klass!r} is not supported (supported: HTDemucs, HDemucs): {path}")
    kwargs = dict(kwargs)
    if args:
        kwargs.setdefault("sources", args[0])
    unsupported = []
    if kwargs.get("multi_freqs"):
        unsupported.append("multi_freqs")
    if kwargs.get("t_sparse_self_attn") or kwargs.get("t_sparse_cross_attn"):
        unsupported.append("sparse attention")
    if kwargs.get("t_emb", "sin") != "sin":
        unsupported.append(f"t_emb={kwargs['t_emb']}")
    if not kwargs.get("cac", True):
        unsupported.append("cac=False")
    if unsupported:
        raise ModelError(f"demucs package uses options we do not implement ({', '.join(unsupported)}): {path}")
    renames = {"audio_channels": "channels", "channels": "channels_base", "samplerate": "sample_rate"}
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    values: dict[str, Any] = {}
    for key, value in kwargs.items():
        key = renames.get(key, key)
        if key in ("multi_freqs", "t_emb", "t_sparse_self_attn", "t_sparse_cross_attn") or key in _DEMUCS_TRAINING_ONLY:
            continue
        if key not in fields:
            raise ModelError(f"demucs package has an argument we do not know ({key}): {path}")
        if isinstance(value, Fraction):
            value = float(value)
        values[key] = tuple(value) if isinstance(value, list) else value
    return cls, cls.config_class(**values)


def load_demucs_package(path: str | Path) -> StemModel:
    """One demucs ``.th`` package (HTDemucs / HDemucs) -> our model with its weights."""
    path = Path(path)
    package = _read_demucs_package(path)
    klass = package["klass"]
    name = klass.__name__ if isinstance(klass, type) and issubclass(klass, DemucsClass) else repr(klass)[:60]
    cls, config = _demucs_config(name, tuple(package.get("args") or ()), package["kwargs"], path)
    state = package["state"]
    if state.get("__quantized"):
        raise ModelError(f"quantized demucs packages (diffq) are not supported: {path}")
    model = build_within(lambda: cls(config), state.values(), str(path))
    # Half-precision packages are copied (and cast) into the float parameters directly: no float copy of the
    # whole state dict, so loading peaks at the model plus the package, not the model plus two state dicts.
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"demucs package does not match its architecture: {path}: {str(exc).splitlines()[0]}") from exc
    return model.eval()


def _sha256_prefix_ok(path: Path) -> bool:
    """demucs names files ``<sig>-<first 8 hex of sha256>.th``; check it when present."""
    stem = path.stem
    if "-" not in stem:
        return True
    expected = stem.rsplit("-", 1)[1]
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest().startswith(expected)


def _find_signature(folder: Path, signature: str) -> Path:
    matches = sorted(folder.glob(f"{signature}.th")) + sorted(folder.glob(f"{signature}-*.th"))
    if not matches:
        raise ModelError(f"bag of models needs {signature}[-<hash>].th next to its yaml in {folder}")
    return matches[0]


def load_demucs_bag(yaml_path: str | Path) -> StemModel:
    """A demucs bag (``htdemucs_ft.yaml``: models, per-source weights, segment) with its ``.th`` files beside it."""
    import yaml

    from stemforge.models.compat.bag import BagOfModels, apply_bag_segment

    yaml_path = Path(yaml_path)
    try:
        spec = yaml.safe_load(yaml_path.read_text())
        signatures = list(spec["models"])
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise ModelError(f"not a demucs bag-of-models yaml: {yaml_path}") from exc
    models = []
    for signature in signatures:
        file = _find_signature(yaml_path.parent, str(signature))
        if not _sha256_prefix_ok(file):
            raise ModelError(f"sha256 of {file} does not match the prefix in its name (corrupt download?)")
        models.append(load_demucs_package(file))
    if len(models) == 1 and spec.get("weights") is None:
        if spec.get("segment") is not None:
            apply_bag_segment(models[0], spec["segment"])
        return models[0]
    return BagOfModels(models, spec.get("weights"), spec.get("segment"))


def load_demucs(path: str | Path) -> StemModel:
    """A ``.th`` package, a bag ``.yaml``, or a folder holding exactly one bag yaml."""
    path = Path(path)
    if path.is_dir():
        yamls = sorted(path.glob("*.yaml"))
        if len(yamls) != 1:
            raise ModelError(f"folder {path} must hold exactly one demucs bag .yaml (found {len(yamls)})")
        path = yamls[0]
    if path.suffix.lower() == ".yaml":
        return load_demucs_bag(path)
    if not _sha256_prefix_ok(path):
        raise ModelError(f"sha256 of {path} does not match the prefix in its name (corrupt download?)")
    return load_demucs_package(path)


load = load_demucs

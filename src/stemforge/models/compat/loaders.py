"""Loaders that read published checkpoint files unchanged and return our ``StemModel`` implementations.

Formats: Open-Unmix per-target ``.pth`` state dicts (a folder, or one file), demucs ``.th`` packages
(single models and bags of models, or a bag's ``.yaml`` next to its ``.th`` files), RoFormer ``.ckpt``
with the community YAML config, MDX-Net ``.onnx`` graphs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import re
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable

import torch

from stemforge.errors import ModelError
from stemforge.models.base import StemModel

_UMX_ORDER = ("vocals", "drums", "bass", "other")


def _one_line(text: str, limit: int = 200) -> str:
    """First line of ``text`` without terminal escapes or control characters, at most ``limit`` characters."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    line = "".join(ch if ch.isprintable() else "?" for ch in line)
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _refusal(path: Path, what: str, exc: Exception) -> str:
    """Why torch's ``weights_only`` unpickler refused ``path``: the globals it names, else torch's own reason."""
    try:
        names = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # noqa: BLE001 - legacy (non-zip) files, or a file broken in another way
        names = []
    if names:
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        return f"refusing to load {what} {path}: it refers to code ({shown}); model files may hold only tensors and plain data"
    reason = _one_line(str(exc).split("WeightsUnpickler error:", 1)[-1].split(". ", 1)[0]) or type(exc).__name__
    return f"cannot read {what} {path} (corrupt, or more than tensors and plain data): {reason}"


def read_torch_pickle(path: str | os.PathLike[str], what: str, safe_globals: Iterable[Any] = (),
                      map_location: str | torch.device = "cpu") -> Any:
    """Read a ``torch.save`` file with ``weights_only=True``: tensors and plain containers, no code runs.

    Every third-party ``.th`` / ``.pth`` / ``.ckpt`` file goes through here (our own files are safetensors).

    Args:
        path: the file.
        what: how the file is named in error messages (e.g. ``"demucs model package"``).
        safe_globals: extra globals the file may name, as accepted by ``torch.serialization.safe_globals``
            (harmless stand-ins, e.g. ``(StandIn, "demucs.htdemucs.HTDemucs")``).
        map_location: where tensors are placed.

    Returns:
        The unpickled object.

    Raises:
        ModelError: the file is missing, corrupt, or names anything beyond tensors and plain data (one line).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{what} not found: {path}")
    with torch.serialization.safe_globals(list(safe_globals)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as exc:
            raise ModelError(_refusal(path, what, exc)) from exc
        except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt files
            raise ModelError(f"cannot read {what} {path}: {_one_line(str(exc).split('. ', 1)[0]) or type(exc).__name__}") from exc


def _torch_load(path: Path) -> Any:
    """Read a torch pickle of tensors and plain containers only (``weights_only``: no code runs)."""
    return read_torch_pickle(path, "checkpoint")


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


# ---------------------------------------------------------------- demucs packages


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
    model = cls(config)
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


# ---------------------------------------------------------------- RoFormer .ckpt + YAML


def _config_yaml_loader() -> type:
    """SafeLoader that also reads ``!!python/tuple`` (used throughout the community configs) as a tuple."""
    import yaml

    class ConfigLoader(yaml.SafeLoader):
        pass

    ConfigLoader.add_constructor("tag:yaml.org,2002:python/tuple",
                                 lambda loader, node: tuple(loader.construct_sequence(node)))
    return ConfigLoader


def read_config_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.load(path.read_text(), Loader=_config_yaml_loader())  # noqa: S506 - safe loader subclass
    except (OSError, yaml.YAMLError) as exc:
        raise ModelError(f"cannot read config {path}: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise ModelError(f"config has no 'model' section: {path}")
    return data


def _roformer_yaml_for(ckpt: Path) -> Path:
    same = ckpt.with_suffix(".yaml")
    if same.is_file():
        return same
    candidates = [p for p in sorted(ckpt.parent.glob("*.yaml")) if _is_roformer_yaml(p)]
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
    state = _plain_state_dict(_torch_load(path), path)
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
        model = RoFormer(config_obj)
        # Rotary frequencies are deterministic; older files may lack them, so default to ours.
        merged = {k: v for k, v in model.state_dict().items() if k.endswith("rotary_embed.freqs")}
        merged.update(state)
        model.load_state_dict(merged, strict=True)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ModelError(f"RoFormer checkpoint does not match its config: {path}: {str(exc).splitlines()[0]}") from exc
    return model.eval()


# ---------------------------------------------------------------- MDX-Net ONNX


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
    if suffix in (".yaml", ".yml"):
        return "roformer-config" if _is_roformer_yaml(path) else "demucs"
    return {".pth": "openunmix", ".th": "demucs", ".ckpt": "roformer", ".onnx": "mdxnet"}.get(suffix)


def _is_roformer_yaml(path: Path) -> bool:
    try:
        head = path.read_text(errors="replace")[:20000]
    except OSError:
        return False
    return "model:" in head and "audio:" in head


#: What a loader raises when a file's contents (config values, tensor shapes) are of the wrong type or value.
_MALFORMED = (ValueError, TypeError, AttributeError, KeyError, IndexError, ZeroDivisionError, OverflowError, RuntimeError)


def load_pretrained(path_or_name: str | Path, **options: Any) -> StemModel:
    """Load any supported published checkpoint (a local path, or a downloaded zoo name) as a ``StemModel``.

    Args:
        path_or_name: a ``.th`` / ``.yaml`` / ``.pth`` / ``.ckpt`` / ``.onnx`` file, a folder of them, or a zoo name.
        **options: passed to the format's loader (e.g. ``niter`` for Open-Unmix).

    Returns:
        The model in eval mode.

    Raises:
        ModelError: the file is missing, unsupported, malformed or hostile (one line; nothing in it runs).
    """
    path = Path(path_or_name).expanduser()
    if not path.exists():
        from stemforge import zoo

        return zoo.load(str(path_or_name), **options)
    try:
        return _load_local(path, **options)
    except _MALFORMED as exc:
        if isinstance(exc, torch.OutOfMemoryError):
            raise
        raise ModelError(f"cannot use {path}: malformed contents ({type(exc).__name__}: {_one_line(str(exc))})") from exc


def _load_local(path: Path, **options: Any) -> StemModel:
    kind = detect_format(path)
    if kind == "openunmix":
        return load_openunmix(path, **options)
    if kind == "demucs":
        return load_demucs(path, **options)
    if kind == "roformer":
        return load_roformer(path, **options)
    if kind == "roformer-config":
        checkpoint = path.with_suffix(".ckpt")
        if not checkpoint.is_file():
            raise ModelError(f"RoFormer config {path.name} needs its weights next to it as {checkpoint.name}")
        return load_roformer(checkpoint, config=path, **options)
    if kind == "mdxnet":
        return load_mdxnet(path, **options)
    raise ModelError(f"unrecognised checkpoint format: {path} (expected .pth, .th, .yaml, .ckpt or .onnx)")

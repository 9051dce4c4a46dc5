"""Model lookup in one place: ``load_model(name_or_path)`` for every kind of model stemforge can run.

A name or path is resolved in this order:

1. ``"default"``: the bundled model (``assets/default.safetensors``), or ``classical`` if this install has none;
   other bundled models (``catalogue.BUNDLED``: ``"lowlatency"``) by name;
2. a ``.safetensors`` file: a stemforge checkpoint (``stemforge.checkpoint``);
3. a zoo name (``hub.catalogue``), loaded from the download cache (``hub.cache``) after a hash check;
4. a published checkpoint file or folder (demucs, Open-Unmix, RoFormer, MDX-Net: ``models.compat.loaders``);
5. a registered preset that needs no training (``classical``, ``hpss``, ...: ``models.registry``).

Anything else raises ``UnknownModelError`` naming close matches and the three lists (runnable models,
downloadable checkpoints, architectures to train). ``best_model()`` names the best model available now (a
verified cached or freshly downloaded HTDemucs, else ``"default"``: ``hub.best``); ``stemforge separate`` without
``-n`` runs it. This package imports no torch until a model is loaded.
"""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stemforge.errors import ModelError
from stemforge.hub import catalogue
from stemforge.hub.best import DEFAULT_MODEL, OFFLINE_ENV, PREFERRED, best_model, offline_requested
from stemforge.hub.cache import default_cache_dir, download, entry_dir, is_downloaded, offline_hint, verify
from stemforge.hub.catalogue import ZooEntry, ZooFile, find, list_checkpoints

if TYPE_CHECKING:
    from stemforge.models.base import StemModel


class UnknownModelError(ModelError):
    """A model name that is neither a file, a zoo name nor a runnable preset.

    Attributes:
        name: what was asked for.
        suggestions: close names (difflib), best first.
        downloadable: the zoo names.
    """

    def __init__(self, name: str, suggestions: list[str], runnable: list[str], downloadable: list[str],
                 trainable: list[str]) -> None:
        self.name, self.suggestions, self.downloadable = name, suggestions, downloadable
        hint = f"did you mean {' or '.join(repr(s) for s in suggestions)}? " if suggestions else ""
        super().__init__(
            f"unknown model {name!r}: not a checkpoint file or a known name; {hint}"
            f"ready to run: {', '.join(runnable)}; downloadable: {', '.join(downloadable)}; "
            f"architectures to train first: {', '.join(trainable)}")


class NotDownloadedError(ModelError):
    """A zoo model whose files are not in the cache.

    Attributes:
        name: the zoo name.
        cli_message: the same advice in command-line terms (the CLI prints it instead).
    """

    def __init__(self, entry: ZooEntry, folder: Path) -> None:
        self.name = entry.name
        where = offline_hint(entry, folder)
        super().__init__(f"zoo model {entry.name!r} is not downloaded: stemforge.hub.download({entry.name!r}) "
                         f"fetches it (needs internet), or {where} (or load the file by its path)")
        self.cli_message = (f"zoo model {entry.name!r} is not downloaded: run 'stemforge models download "
                            f"{entry.name}' (needs internet), or {where} (or pass -n /path/to/the/file)")


class UntrainedModelError(ModelError):
    """A registered architecture that has no trained weights of its own (train it, then load the checkpoint)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"model {name!r} is an architecture without trained weights; train it first "
                         "(stemforge.train) and load the checkpoint that writes")
        self.cli_message = (f"model {name!r} is an architecture without trained weights; train it with "
                            "'stemforge train' and pass the checkpoint it writes (-n path/to/model.safetensors)")


def bundled_checkpoint(name: str = DEFAULT_MODEL) -> Path | None:
    """The checkpoint of a model shipped with the package (``catalogue.BUNDLED``), if this install has it."""
    path = Path(str(resources.files("stemforge") / "assets" / catalogue.BUNDLED[name]))
    return path if path.is_file() else None


def load_zoo(name: str, cache_dir: str | Path | None = None, **options: Any) -> StemModel:
    """The model of a downloaded zoo checkpoint, every file hash-checked before it is read.

    Args:
        name: a catalogue name (``hub.list_checkpoints()``).
        cache_dir: the cache root (default ``default_cache_dir()``).
        **options: passed to the format's loader.

    Returns:
        The model in eval mode, on the CPU.

    Raises:
        ModelError: unknown name, not downloaded (says what to download), or a file fails its check (one line).
    """
    from stemforge.models.compat.loaders import load_pretrained

    entry = find(name)
    if entry is None:
        raise ModelError(f"{name!r} is not a zoo model; known zoo models: "
                         f"{', '.join(e.name for e in catalogue.CATALOGUE)}")
    folder = entry_dir(entry, cache_dir)
    if not is_downloaded(entry, cache_dir):
        raise NotDownloadedError(entry, folder)
    for file in entry.files:  # downloaded or placed by hand: checked before anything reads it
        verify(file, folder / file.name)
    if entry.manifest and not (folder / entry.manifest[0]).is_file():
        (folder / entry.manifest[0]).write_text(entry.manifest[1])
    target = folder / (entry.load_file or (entry.manifest[0] if entry.manifest else ""))
    if entry.config_file:
        options.setdefault("config", folder / entry.config_file)
    return load_pretrained(target, **options)


def resolve_model(name_or_path: str | Path, cache_dir: str | Path | None = None) -> StemModel | None:
    """A zoo name or a published-format file/folder -> model; None if it is neither.

    Raises:
        ModelError: a zoo name that is not downloaded, or a file that fails to load (one line).
    """
    from stemforge.models.compat.loaders import detect_format, load_pretrained

    text = str(name_or_path)
    if find(text) is not None:
        return load_zoo(text, cache_dir)
    path = Path(text).expanduser()
    if path.exists() and detect_format(path) is not None:
        return load_pretrained(path)
    return None


def model_names() -> dict[str, list[str]]:
    """The names ``load_model`` knows, in three lists.

    Returns:
        ``{"runnable": [...], "downloadable": [...], "trainable": [...]}``: presets that run without training
        (and ``"default"``), zoo checkpoints, and architectures that need ``stemforge train`` first.
    """
    from stemforge.models.registry import available

    runnable = [DEFAULT_MODEL] + [n for n in catalogue.BUNDLED if n != DEFAULT_MODEL and bundled_checkpoint(n)]
    trainable = []
    for spec in available():
        (trainable if spec.family != "classical" else runnable).append(spec.name)
    return {"runnable": runnable, "downloadable": [e.name for e in catalogue.CATALOGUE], "trainable": trainable}


def unknown_model_error(name: str) -> UnknownModelError:
    """The error for an unknown ``name``, with close matches among every known name (difflib)."""
    names = model_names()
    every = [n for group in names.values() for n in group]
    suggestions = difflib.get_close_matches(name, every, n=3, cutoff=0.6)
    return UnknownModelError(name, suggestions, names["runnable"], names["downloadable"], names["trainable"])


def resolve(name_or_path: str | Path = DEFAULT_MODEL, cache_dir: str | Path | None = None) -> tuple[StemModel, str]:
    """Resolve what a user names (see the module docstring) to a model and a display name.

    Args:
        name_or_path: ``"default"``, a preset, a zoo name, or a checkpoint file / folder.
        cache_dir: the zoo cache root (default ``default_cache_dir()``).

    Returns:
        (model in eval mode, display name used for output folders).

    Raises:
        UnknownModelError: nothing by that name (close matches and the three lists in the message).
        ModelError: the name is known but cannot be used (not downloaded, an untrained architecture, a bad file).
    """
    from stemforge.checkpoint import load_checkpoint
    from stemforge.models.registry import available, build

    text = str(name_or_path)
    if text == DEFAULT_MODEL:
        checkpoint = bundled_checkpoint()
        if checkpoint is None:
            return build("classical").eval(), "classical"
        return load_checkpoint(checkpoint)[0], DEFAULT_MODEL
    if text in catalogue.BUNDLED:
        checkpoint = bundled_checkpoint(text)
        if checkpoint is None:
            raise ModelError(f"bundled model {text!r} is not in this install (no assets/{catalogue.BUNDLED[text]})")
        return load_checkpoint(checkpoint)[0], text
    path = Path(text).expanduser()
    if path.suffix == ".safetensors":
        return load_checkpoint(path)[0], path.stem
    published = resolve_model(text, cache_dir)  # a zoo name, or a Demucs / Open-Unmix / RoFormer / MDX-Net file
    if published is not None:
        return published.eval(), path.stem if path.exists() else text
    if path.is_file():
        return load_checkpoint(path)[0], path.stem
    if text not in {spec.name for spec in available()}:
        raise unknown_model_error(text)
    model = build(text)
    if model.trainable:
        raise UntrainedModelError(text)
    return model.eval(), text


def load_model(name_or_path: str | Path = DEFAULT_MODEL, cache_dir: str | Path | None = None) -> StemModel:
    """Load any model stemforge can run, by name or path.

    Args:
        name_or_path: ``"default"``, a preset (``"classical"``), a zoo name (``"htdemucs"``, downloaded), a
            stemforge ``.safetensors`` checkpoint, or a published checkpoint file / folder.
        cache_dir: the zoo cache root (default ``default_cache_dir()``).

    Returns:
        The model in eval mode, on the CPU; ``model(mix)`` maps (batch, channels, time) to
        (batch, stems, channels, time).

    Raises:
        ModelError: unknown, not downloaded, untrained, or a file that fails to load (one line).
    """
    return resolve(name_or_path, cache_dir)[0]


__all__ = ["DEFAULT_MODEL", "OFFLINE_ENV", "PREFERRED", "best_model", "offline_requested", "NotDownloadedError", "UnknownModelError", "UntrainedModelError", "ZooEntry", "ZooFile", "bundled_checkpoint", "default_cache_dir",
           "download", "entry_dir", "find", "is_downloaded", "list_checkpoints", "load_model", "load_zoo",
           "model_names", "resolve", "resolve_model", "unknown_model_error", "verify"]

"""The best model this machine can use now: what ``stemforge separate`` runs when no ``-n`` is given.

Users who come from Demucs expect HTDemucs quality from a bare ``separate song.mp3``; the bundled model is small
and trained on synthetic songs. ``best_model`` picks, in this order:

1. offline (``offline=True`` or ``STEMFORGE_OFFLINE=1``): the bundled model, without a word;
2. the first of ``PREFERRED`` (HTDemucs first) whose files are in the zoo cache and pass their size and hash
   check (a corrupt file is never chosen, and is said to be corrupt);
3. with network, the first of ``PREFERRED`` downloaded now, with a progress bar, and verified
   (``hub.cache.download``); whether there is network is a connection probe of at most
   ``hub.cache.PROBE_TIMEOUT`` seconds, asked once per process, so an offline machine falls back at once;
4. otherwise the bundled model, with a one-line notice (``logging``: the CLI prints ``warning: ...``, ``-q``
   hides it) saying why and how to get the better one.

Plain Python: importing this module imports no torch. ``best_model`` returns a name for ``hub.resolve``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from stemforge.errors import ModelError
from stemforge.hub import catalogue
from stemforge.hub.cache import PROBE_TIMEOUT, download, entry_dir, is_downloaded, reachable, verify

#: The bundled model's name (``assets/default.safetensors``; ``classical`` in an install without it).
DEFAULT_MODEL = "default"
#: Zoo models worth running instead of the bundled one, best first: four-stem models whose weights may be used
#: commercially (umxl, CC BY-NC-SA, is left out). Only the first is downloaded on first use.
PREFERRED = ("htdemucs", "htdemucs_ft", "hdemucs_mmi", "umxhq", "umx")
#: Set to 1 (or true, yes, on) to force the bundled model, as ``--offline`` does.
OFFLINE_ENV = "STEMFORGE_OFFLINE"

logger = logging.getLogger(__name__)


def offline_requested(offline: bool | None = None) -> bool:
    """Whether the bundled model is forced: ``offline`` is true, or ``$STEMFORGE_OFFLINE`` is 1/true/yes/on.

    Args:
        offline: the caller's own switch (``--offline``); None or False defers to the environment.

    Returns:
        True if no zoo model may be used or fetched.
    """
    return bool(offline) or os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def cached_model(names: tuple[str, ...] | None = None, cache_dir: str | Path | None = None) -> tuple[str | None, list[str]]:
    """The first of ``names`` whose files are all in the cache and pass their check.

    Args:
        names: zoo names, best first (default ``PREFERRED``).
        cache_dir: the zoo cache root (default ``hub.default_cache_dir()``).

    Returns:
        (the name, or None), and one line per cached model that failed its check (it is skipped, never loaded).
    """
    problems = []
    for name in PREFERRED if names is None else names:
        entry = catalogue.find(name)
        if entry is None or not is_downloaded(entry, cache_dir):
            continue
        folder = entry_dir(entry, cache_dir)
        try:
            for file in entry.files:
                verify(file, folder / file.name)
        except ModelError as exc:
            problems.append(str(exc))
            continue
        return name, problems
    return None, problems


def best_model(offline: bool | None = None, cache_dir: str | Path | None = None, progress: bool = True,
               timeout: float = PROBE_TIMEOUT) -> str:
    """The name of the best model available now (see the module docstring for the order).

    Args:
        offline: force the bundled model (``--offline``); None or False: ``$STEMFORGE_OFFLINE`` decides.
        cache_dir: the zoo cache root (default ``hub.default_cache_dir()``).
        progress: draw a download progress bar on stderr.
        timeout: seconds the connectivity probe may take, name lookup included.

    Returns:
        A zoo name from ``PREFERRED`` (in the cache, verified) or ``DEFAULT_MODEL``; pass it to ``hub.resolve``.
        Falling back to the bundled model logs one warning saying why and how to get the better model.
    """
    if offline_requested(offline):
        return DEFAULT_MODEL
    name, problems = cached_model(PREFERRED, cache_dir)
    if name is not None:
        for problem in problems:
            logger.warning(f"skipped a corrupt cached model: {problem}")
        return name
    wanted = catalogue.find(PREFERRED[0])
    if wanted is None:  # the catalogue lost its entry: nothing better than the bundled model
        return DEFAULT_MODEL
    get = (f"run 'stemforge models download {wanted.name}' where there is internet (or copy its files into "
           f"{entry_dir(wanted, cache_dir)}), then separate again; --offline or {OFFLINE_ENV}=1 hides this notice")
    if problems:
        logger.warning(f"using the bundled model, not {wanted.name}: {problems[0]}")
        return DEFAULT_MODEL
    if not reachable(wanted.files[0].url, timeout):
        logger.warning(f"using the bundled model: {wanted.name} separates better but is not downloaded and there "
                       f"is no network to fetch it; {get}")
        return DEFAULT_MODEL
    size = f" ({wanted.size / 2**20:.0f} MiB)" if wanted.size else ""
    logger.warning(f"downloading {wanted.name}{size} once, the best model for separating; --offline uses the "
                   "bundled model instead")
    try:
        download(wanted, cache_dir, progress=progress)
    except ModelError as exc:
        logger.warning(f"using the bundled model: the download of {wanted.name} failed: {exc}")
        return DEFAULT_MODEL
    return wanted.name

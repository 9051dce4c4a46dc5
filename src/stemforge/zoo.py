"""Model zoo: the public checkpoints stemforge can run, where to get them, and a verified download cache.

Every fact in the catalogue is quoted from a public source, named in the entry (demucs 4.1.0:
``demucs/remote/files.txt``, the bag yamls, ``pretrained.ROOT_URL`` and its README; openunmix 1.3.0: the URLs
in ``openunmix/__init__.py`` and its README; RoFormers: ZFTurbo/Music-Source-Separation-Training
``docs/pretrained_models.md`` and its configs; MDX-Net: UVR's ``model_data.json``). Fields no source states
are ``None`` and shown as "unknown". demucs and openunmix file names embed a sha256 prefix; other hashes say
where they were published (``ZooFile.sha256_source``). The download checks whichever hash there is.

Files land in ``<cache>/<name>/`` (``$STEMFORGE_CACHE`` or ``~/.cache/stemforge/zoo``); an interrupted
download resumes with an HTTP Range request. A download is hashed as it arrives and only a file with the
catalogue's size and hash gets its final name; ``load`` checks every file again (a stamp beside it saves
re-hashing an unchanged file), so a file placed by hand is checked too. ``resolve_model`` is what
``separate -n`` calls.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import socket
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from stemforge.errors import ModelError

if TYPE_CHECKING:
    from stemforge.models.base import StemModel


@dataclasses.dataclass(frozen=True)
class ZooFile:
    """One file of a checkpoint. ``sha256`` may be a prefix (as published in the file name)."""

    url: str
    sha256: str | None
    size: int | None = None
    #: Who published ``sha256`` (None: the file name itself, as demucs and openunmix do).
    sha256_source: str | None = None

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    """A public checkpoint: what it is, how well it is said to do, and where it comes from."""

    name: str
    architecture: str
    stems: tuple[str, ...]
    files: tuple[ZooFile, ...]
    licence: str | None
    sdr: str | None  # as published, e.g. "9.0 (mean of 4 stems)"; None = not published in our sources
    sdr_source: str | None
    #: Extra file written next to the downloads (a demucs bag yaml, MDX-Net settings), as (file name, text).
    manifest: tuple[str, str] | None = None
    notes: str = ""
    #: The file ``load`` opens inside the entry's folder (None: the manifest, else the folder itself).
    load_file: str | None = None
    #: The config that goes with ``load_file`` (a RoFormer YAML), handed to the loader rather than searched for.
    config_file: str | None = None

    @property
    def size(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[misc]


_DEMUCS_ROOT = "https://dl.fbaipublicfiles.com/demucs/hybrid_transformer/"
_DEMUCS_LICENCE = "MIT (demucs repository licence; no separate weights licence stated)"
_DEMUCS_README = "demucs 4.1.0 README (PyPI description)"
_SOURCES4 = ("drums", "bass", "other", "vocals")


def _demucs(name: str, files: list[str], yaml_text: str, sdr: str | None, stems: tuple[str, ...] = _SOURCES4,
            notes: str = "", architecture: str = "htdemucs") -> ZooEntry:
    return ZooEntry(
        name=name, architecture=architecture, stems=stems,
        files=tuple(ZooFile(_DEMUCS_ROOT + f, f.rsplit("-", 1)[1].split(".")[0]) for f in files),
        licence=_DEMUCS_LICENCE, sdr=sdr, sdr_source=_DEMUCS_README if sdr else None,
        manifest=(f"{name}.yaml", yaml_text), notes=notes,
    )


def _umx(name: str, record: str, files: dict[str, str], sdr: str, licence: str | None) -> ZooEntry:
    return ZooEntry(
        name=name, architecture="openunmix", stems=tuple(files),
        files=tuple(ZooFile(f"https://zenodo.org/records/{record}/files/{f}", f.rsplit("-", 1)[1].split(".")[0])
                    for f in files.values()),
        licence=licence, sdr=sdr, sdr_source="openunmix 1.3.0 README, 'Scores (Median of frames, Median of tracks)'",
    )


_MSST = "ZFTurbo/Music-Source-Separation-Training"
_MSST_TABLE = f"{_MSST} docs/pretrained_models.md @494726d3"
_MSST_RAW = "https://raw.githubusercontent.com/ZFTurbo/Music-Source-Separation-Training/"
_UVR_RELEASE = "https://github.com/TRvlvr/model_repo/releases/download/all_public_uvr_models/"
_NO_WEIGHTS_LICENCE = "not stated (no licence given for the weights)"


def _roformer(name: str, architecture: str, stems: tuple[str, str], ckpt: ZooFile, config_path: str, sdr: str,
              sdr_dataset: str, licence: str | None = _NO_WEIGHTS_LICENCE, notes: str = "") -> ZooEntry:
    """A community RoFormer: the .ckpt plus its YAML, the YAML pinned to the commit it was read at.

    A commit-pinned raw URL cannot change, so the YAML has no separate hash.
    """
    config = ZooFile(_MSST_RAW + config_path, None, sha256_source="none published; the URL is pinned to a git commit")
    return ZooEntry(name=name, architecture=architecture, stems=stems, files=(ckpt, config), licence=licence,
                    sdr=sdr, sdr_source=f"{_MSST_TABLE}, {sdr_dataset}",
                    notes=notes, load_file=ckpt.name, config_file=config.name)


def _mdxnet(name: str, file: str, sha256: str | None, sha256_source: str | None, size: int | None,
            target: str, complement: str, n_fft: int, dim_f: int, dim_t_set: int, compensate: float,
            sdr: str | None = None, sdr_source: str | None = None, notes: str = "") -> ZooEntry:
    """A UVR MDX-Net ONNX graph with the settings UVR's model_data.json gives it, written beside it as JSON."""
    settings = {"n_fft": n_fft, "hop": 1024, "dim_f": dim_f, "dim_t": 2 ** dim_t_set, "compensate": compensate,
                "target": target, "complement": complement}
    return ZooEntry(name=name, architecture="mdxnet_onnx", stems=(target, complement),
                    files=(ZooFile(_UVR_RELEASE + file, sha256, size, sha256_source),),
                    licence="not stated for the weights (UVR code is MIT; UVR asks users of its models to credit UVR)",
                    sdr=sdr, sdr_source=sdr_source,
                    manifest=(file.rsplit(".", 1)[0] + ".json", json.dumps(settings, indent=1) + "\n"),
                    notes=(notes + "; " if notes else "") + "settings: UVR model_data.json @7bfceaa7",
                    load_file=file)


_HF_MIRROR = "a Hugging Face mirror's LFS pointer ({}); the publisher gives none"
_AUDIO_SEPARATOR_SCORES = "python-audio-separator models-scores.json @05bd8eca (MUSDB18 median)"

CATALOGUE: tuple[ZooEntry, ...] = (
    _demucs("htdemucs", ["955717e8-8726e21a.th"], "models: ['955717e8']\n", None,
            notes="demucs default model; trained on MUSDB HQ + 800 songs"),
    _demucs("htdemucs_ft", ["f7e0c4bc-ba3fe64a.th", "d12395a8-e57c48e6.th", "92cfc3b6-ef3bcb9c.th", "04573f0d-f3cf25b2.th"],
            "models: ['f7e0c4bc', 'd12395a8', '92cfc3b6', '04573f0d']\n"
            "weights: [[1., 0., 0., 0.], [0., 1., 0., 0.], [0., 0., 1., 0.], [0., 0., 0., 1.]]\n",
            "9.0 (mean of 4 stems, MUSDB HQ test, 'HT Demucs f.t. (v4)')",
            notes="bag of 4 per-source fine-tuned models (4x slower)"),
    _demucs("htdemucs_6s", ["5c90dfd2-34c22ccb.th"], "models: ['5c90dfd2']\n", None,
            stems=("drums", "bass", "other", "vocals", "guitar", "piano"), notes="README: piano 'not working great'"),
    _demucs("hdemucs_mmi", ["75fc33f5-1941ce65.th"], "models: ['75fc33f5']\nsegment: 44\n", None,
            notes="Hybrid Demucs v3 retrained on MUSDB + 800 songs", architecture="hdemucs"),
    _umx("umxhq", "3370489", {"vocals": "vocals-b62c91ce.pth", "drums": "drums-9619578f.pth",
                              "bass": "bass-8d85a5bd.pth", "other": "other-b52fbbf7.pth"},
         "vocals 6.25, bass 5.07, drums 6.04, other 4.28", None),
    _umx("umx", "3370486", {"vocals": "vocals-c8df74a5.pth", "drums": "drums-5a48008b.pth",
                            "bass": "bass-646024d3.pth", "other": "other-f8e132cc.pth"},
         "vocals 6.32, bass 5.23, drums 5.73, other 4.02", None),
    _umx("umxl", "5069601", {"vocals": "vocals-bccbd9aa.pth", "drums": "drums-69e0ebd4.pth",
                             "bass": "bass-2ca1ce51.pth", "other": "other-c8c5b3e6.pth"},
         "vocals 7.21, bass 6.02, drums 7.15, other 4.89", "CC BY-NC-SA 4.0 (weights; non-commercial, per openunmix README)"),
    _roformer("bs_roformer_viperx_1297", "bsroformer", ("vocals", "other"),
              ZooFile(_UVR_RELEASE + "model_bs_roformer_ep_317_sdr_12.9755.ckpt",
                      "5b84f37e8d444c8cb30c79d77f613a41c05868ff9c9ac6c7049c00aefae115aa", 639331213,
                      _HF_MIRROR.format("KitsuneX07/Music_Source_Sepetration_Models")),
              "d9672dac1160ebe9c39aec3d3f3320190e49a5c0/configs/viperx/model_bs_roformer_ep_317_sdr_12.9755.yaml",
              "vocals 10.87", "Multisong dataset", notes="BS Roformer (viperx edition); vocals + instrumental"),
    _roformer("mel_roformer_viperx_1143", "melroformer", ("vocals", "other"),
              ZooFile(_UVR_RELEASE + "model_mel_band_roformer_ep_3005_sdr_11.4360.ckpt",
                      "21b9d0958e35b8ebfbe2afe69bbd5444e5ffe2f5d80ae0d583b833d2f3c0d139", 1007816988,
                      _HF_MIRROR.format("KitsuneX07/Music_Source_Sepetration_Models")),
              "d9672dac1160ebe9c39aec3d3f3320190e49a5c0/configs/viperx/model_mel_band_roformer_ep_3005_sdr_11.4360.yaml",
              "vocals 9.67", "Multisong dataset", notes="MelBand Roformer (viperx edition); vocals + instrumental"),
    _roformer("mel_roformer_kim", "melroformer", ("vocals", "other"),
              ZooFile("https://huggingface.co/KimberleyJSN/melbandroformer/resolve/main/MelBandRoformer.ckpt",
                      "87201f4d31afb5bc79993230fc49446918425574db48c01c405e44f365c7559e", 913106900,
                      "the publisher's Hugging Face LFS details (KimberleyJSN/melbandroformer)"),
              "4a9f4d74ba06fb271fdc92c5c6528dfb79fc90bd/configs/KimberleyJensen/config_vocals_mel_band_roformer_kj.yaml",
              "vocals 10.98", "Multisong dataset", licence="unknown (Hugging Face page: 'License: unknown')",
              notes="MelBand Roformer (KimberleyJensen edition); vocals + instrumental"),
    _roformer("bs_roformer_viperx_other", "bsroformer", ("other", "vocals"),
              ZooFile(_UVR_RELEASE + "model_bs_roformer_ep_937_sdr_10.5309.ckpt",
                      "a2e825a03bc908cb04dbd88eddeefbf5147dd1cf1f95cebf453d9dbfabec494b", None,
                      _HF_MIRROR.format("Eddycrack864/Music-Source-Separation-Training")),
              "ce659b894285eedfb28e236aeffca18c90b96ffb/configs/viperx/model_bs_roformer_ep_937_sdr_10.5309.yaml",
              "other 6.85", "'Single stem models' table, dataset not stated", notes="BS Roformer (viperx edition) predicting 'other' (instrumental)"),
    _mdxnet("mdx_voc_ft", "UVR-MDX-NET-Voc_FT.onnx",
            "534b2070fcc7df514b13ef660dc8cbb328679c2374d04354a5c42bb14ecce111",
            _HF_MIRROR.format("AnhP/Vietnamese-RVC-Project"), None, "vocals", "instrumental", 7680, 3072, 8, 1.021,
            "vocals 9.66183, instrumental 15.2718", _AUDIO_SEPARATOR_SCORES),
    _mdxnet("mdx_kim_vocal_2", "Kim_Vocal_2.onnx",
            "ce74ef3b6a6024ce44211a07be9cf8bc6d87728cc852a68ab34eb8e58cde9c8b",
            _HF_MIRROR.format("debugzxcv/uvr"), 66759214, "vocals", "instrumental", 7680, 3072, 8, 1.009),
    _mdxnet("mdx_kim_inst", "Kim_Inst.onnx",
            "86b1940e7122fbdd2beadc65507cbff6c352d79012a8a7e60d56db98532af5f7",
            _HF_MIRROR.format("debugzxcv/uvr"), 66759214, "instrumental", "vocals", 7680, 3072, 8, 1.02),
    _mdxnet("mdx_inst_hq_3", "UVR-MDX-NET-Inst_HQ_3.onnx",
            "317554b07fe1ea5279a77f2b1520a41ea4b93432560c4ffd08792c30fddf9adc",
            _HF_MIRROR.format("lissette/uvr"), 66759214, "instrumental", "vocals", 6144, 3072, 8, 1.022),
    _mdxnet("mdx_inst_hq_4", "UVR-MDX-NET-Inst_HQ_4.onnx",
            "3c4b5b9b05090fdf238f38ba5046813982d50e2a652e9cb3324ea79720c3c9c8",
            _HF_MIRROR.format("AnhP/Vietnamese-RVC-Project"), None, "instrumental", "vocals", 5120, 2560, 8, 1.019),
    _mdxnet("mdx_kara_2", "UVR_MDXNET_KARA_2.onnx",
            "bf32e15105a09c0f7dddd2b67346146334d6f3ecb399ed7638eba2ab07cbf5f4",
            _HF_MIRROR.format("lissette/uvr"), 52786726, "instrumental", "vocals", 5120, 2048, 8, 1.065,
            notes="karaoke: lead vocals out, backing vocals stay in the instrumental"),
)


def list_checkpoints() -> list[ZooEntry]:
    """Every known public checkpoint, in catalogue order."""
    return list(CATALOGUE)


def find(name: str) -> ZooEntry | None:
    return next((e for e in CATALOGUE if e.name == name), None)


def default_cache_dir() -> Path:
    """The zoo cache root.

    Returns:
        ``$STEMFORGE_CACHE`` if set, else ``<user cache dir>/stemforge/zoo`` (``~/.cache/stemforge/zoo`` on
        Linux, from platformdirs).
    """
    env = os.environ.get("STEMFORGE_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return platformdirs.user_cache_path("stemforge") / "zoo"


def entry_dir(entry: ZooEntry, cache_dir: str | Path | None = None) -> Path:
    """``<cache root>/<name>``; the root is ``cache_dir`` or ``default_cache_dir()``."""
    return (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()) / entry.name


def is_downloaded(entry: ZooEntry, cache_dir: str | Path | None = None) -> bool:
    """Whether every file of ``entry`` is present (not whether it is intact: ``verify`` checks that)."""
    folder = entry_dir(entry, cache_dir)
    return all((folder / f.name).is_file() for f in entry.files)


def _offline_hint(entry: ZooEntry, folder: Path) -> str:
    urls = " ".join(f.url for f in entry.files)
    return f"download {urls} and put the file(s) in {folder} (or pass -n /path/to/the/file)"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hash_mismatch(file: ZooFile, digest: str) -> str | None:
    """None when ``digest`` agrees with the catalogue (or it has no hash), else the one-line complaint."""
    if not file.sha256 or digest.startswith(file.sha256.lower()):
        return None
    source = f" (from {file.sha256_source})" if file.sha256_source else ""
    return (f"sha256 {digest[:16]}... does not match the published {file.sha256[:16]}"
            f"{'...' if len(file.sha256) > 16 else ''}{source}")


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _stat_key(path: Path) -> dict[str, int]:
    # ctime cannot be set by hand (unlike mtime), so an edited file whose mtime was put back is still noticed.
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "inode": st.st_ino}


def _write_stamp(path: Path, digest: str) -> None:
    stamp = _stamp_path(path)
    tmp = stamp.with_name(stamp.name + f".{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps({**_stat_key(path), "sha256": digest}))
        os.replace(tmp, stamp)
    except OSError:  # a read-only cache still works; the file is just hashed again next time
        tmp.unlink(missing_ok=True)


def verify(file: ZooFile, path: Path) -> str:
    """Check a cached file against the catalogue (size, then sha256) and return its sha256.

    The hash of a file is remembered in ``<file>.verified.json`` with its size, mtime, ctime and inode, so an
    unchanged file is not hashed again; a file placed by hand is hashed on first use like a downloaded one.

    Args:
        file: the catalogue's description of the file.
        path: the file in the cache.

    Returns:
        The file's sha256 (hex).

    Raises:
        ModelError: the size or the hash differs from the catalogue's (one line; the file is left alone).
    """
    key = _stat_key(path)
    if file.size is not None and key["size"] != file.size:
        raise ModelError(f"{path}: {key['size']} bytes, but the catalogue says {file.size}; delete it and run "
                         "'stemforge models download' again (or put the right file there)")
    try:
        stamp = json.loads(_stamp_path(path).read_text())
    except (OSError, ValueError):
        stamp = None
    if isinstance(stamp, dict) and isinstance(stamp.get("sha256"), str) and all(stamp.get(k) == v for k, v in key.items()):
        digest = stamp["sha256"]
    else:
        digest = _sha256(path)
        _write_stamp(path, digest)
    problem = _hash_mismatch(file, digest)
    if problem:
        raise ModelError(f"{path}: {problem}; refusing to load it: delete it and run 'stemforge models download' "
                         "again (or put the right file there)")
    return digest


def _network_reason(exc: BaseException, url: str) -> tuple[str, bool]:
    """(one-line reason, whether it is a TLS failure) for a failed request."""
    reason = getattr(exc, "reason", exc)
    host = urllib.parse.urlsplit(url).hostname or url
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed for {host}: {reason.verify_message or reason.reason}", True
    if isinstance(reason, ssl.SSLError):
        return f"TLS error with {host}: {reason.reason or reason}", True
    return str(reason), False


def _fetch(file: ZooFile, url: str, dest: Path, timeout: float, report: Callable[[int, int | None], None]) -> str:
    """Download ``url`` to ``dest`` via ``dest.part``, resuming a previous partial download; returns the sha256.

    The file is hashed as it arrives (the kept part first) and checked against the catalogue's size and hash
    before it is renamed to ``dest``: the final name only ever holds a verified file. A server that sends more
    bytes than the catalogue (or its own Content-Length) states is refused.
    """
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if file.size is not None and have > file.size:
        part.unlink()
        have = 0
    request = urllib.request.Request(url, headers={"User-Agent": "stemforge"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    digest = hashlib.sha256()
    expected = file.size
    done = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if have and response.status != 206:
                have = 0  # server ignored the range: start over
            length = response.headers.get("Content-Length")
            offered = have + int(length) if length is not None and length.isdigit() else None
            if file.size is not None and offered is not None and offered != file.size:
                raise ModelError(f"download of {url} refused: the server offers {offered} bytes, the catalogue "
                                 f"says {file.size}")
            expected = file.size if file.size is not None else offered
            if have:
                with part.open("rb") as kept:
                    for block in iter(lambda: kept.read(1 << 20), b""):
                        digest.update(block)
            with part.open("ab" if have else "wb") as out:
                done = have
                report(done, expected)
                while True:
                    # Ask for one byte past the expected end, so a server sending too much is caught at once.
                    want = 1 << 16 if expected is None else min(1 << 16, expected - done + 1)
                    block = response.read1(want)  # whatever has arrived, so a stall keeps it
                    if not block:
                        break
                    if expected is not None and done + len(block) > expected:
                        out.close()
                        part.unlink(missing_ok=True)
                        raise ModelError(f"download of {url} refused: the server sent more than the expected "
                                         f"{expected} bytes")
                    out.write(block)
                    digest.update(block)
                    done += len(block)
                    report(done, expected)
    except urllib.error.HTTPError as exc:
        if not (exc.code == 416 and have):
            raise ModelError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from exc
        # Requested range past the end: the kept part may be the whole file; the checks below decide.
        digest = hashlib.sha256()
        with part.open("rb") as kept:
            for block in iter(lambda: kept.read(1 << 20), b""):
                digest.update(block)
        done = expected = have
    except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, ssl.SSLError) as exc:
        reason, tls = _network_reason(exc, url)
        if tls:
            raise ModelError(f"download of {url} failed: {reason} (a proxy that intercepts HTTPS or a wrong "
                             "system clock can cause this)") from exc
        if part.exists() and part.stat().st_size > 0:
            raise ModelError(f"download of {url} failed ({reason}); partial data kept in {part}, run again to resume") from exc
        part.unlink(missing_ok=True)
        raise ModelError(f"download of {url} failed ({reason}); offline? fetch it on a machine with internet "
                         f"and put it in {dest.parent}/") from exc
    if expected is not None and done < expected:
        raise ModelError(f"download of {url} stopped at {done} of {expected} bytes; run again to resume")
    if file.size is not None and done != file.size:
        part.unlink(missing_ok=True)
        raise ModelError(f"download of {url} refused: {done} bytes, the catalogue says {file.size}; deleted, run again")
    sha = digest.hexdigest()
    problem = _hash_mismatch(file, sha)
    if problem:
        part.unlink(missing_ok=True)
        raise ModelError(f"{file.name}: {problem}; corrupt or tampered download, deleted, run again")
    part.replace(dest)
    _write_stamp(dest, sha)
    return sha


def download(entry: ZooEntry | str, cache_dir: str | Path | None = None, progress: bool = True,
             mirror: str | None = None, timeout: float = 30.0) -> Path:
    """Fetch every file of a zoo checkpoint into its cache folder, verified, and return the folder.

    Args:
        entry: a catalogue entry or its name.
        cache_dir: the cache root (default ``default_cache_dir()``).
        progress: draw a progress bar on stderr.
        mirror: replaces each URL's folder (``<mirror>/<file name>``), for local mirrors.
        timeout: seconds without data before giving up.

    Returns:
        The entry's folder.

    Raises:
        ModelError: a download fails, or a file's size or hash differs from the catalogue's (a downloaded file
            with a bad hash is deleted; one already in the cache is left alone and refused).
    """
    if isinstance(entry, str):
        found = find(entry)
        if found is None:
            raise ModelError(f"unknown zoo model {entry!r}; known: {', '.join(e.name for e in CATALOGUE)}")
        entry = found
    folder = entry_dir(entry, cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for file in entry.files:
        dest = folder / file.name
        url = f"{mirror.rstrip('/')}/{file.name}" if mirror else file.url
        if dest.is_file():
            verify(file, dest)
            continue
        bar = _progress(file.name, progress)
        try:
            _fetch(file, url, dest, timeout, bar)
        finally:
            bar(-1, None)
    if entry.manifest:
        (folder / entry.manifest[0]).write_text(entry.manifest[1])
    return folder


def _progress(label: str, enabled: bool) -> Callable[[int, int | None], None]:
    """A (done, total) callback drawing a tqdm bar on stderr; (-1, None) closes it."""
    if not enabled:
        return lambda done, total: None
    from tqdm import tqdm

    bar = tqdm(desc=label, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr, leave=False)

    def report(done: int, total: int | None) -> None:
        if done < 0:
            bar.close()
            return
        if total is not None and bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    return report


def load(name: str, cache_dir: str | Path | None = None, **options: object) -> StemModel:
    """The model of a downloaded zoo checkpoint; a clear error saying what to download if it is missing."""
    from stemforge.models.compat.loaders import load_pretrained

    entry = find(name)
    if entry is None:
        raise ModelError(f"{name!r} is neither a file nor a zoo model; known zoo models: "
                         f"{', '.join(e.name for e in CATALOGUE)}")
    folder = entry_dir(entry, cache_dir)
    if not is_downloaded(entry, cache_dir):
        raise ModelError(f"zoo model {name!r} is not downloaded: run 'stemforge models download {name}' "
                         f"(needs internet), or {_offline_hint(entry, folder)}")
    for file in entry.files:  # downloaded or placed by hand: checked before anything reads it
        verify(file, folder / file.name)
    if entry.manifest and not (folder / entry.manifest[0]).is_file():
        (folder / entry.manifest[0]).write_text(entry.manifest[1])
    target = folder / (entry.load_file or (entry.manifest[0] if entry.manifest else ""))
    if entry.config_file:
        options.setdefault("config", folder / entry.config_file)
    return load_pretrained(target, **options)


def resolve_model(name_or_path: str | Path, cache_dir: str | Path | None = None) -> StemModel | None:
    """For ``separate -n``: a zoo name or a published-format file/folder -> model; None if it is neither.

    Raises ``ModelError`` (one line) for a zoo name that is not downloaded or a file that fails to load.
    """
    from stemforge.models.compat.loaders import detect_format, load_pretrained

    text = str(name_or_path)
    if find(text) is not None:
        return load(text, cache_dir)
    path = Path(text).expanduser()
    if path.exists() and detect_format(path) is not None:
        return load_pretrained(path)
    return None


# ------------------------------------------------------------------ CLI (`stemforge models list|download`)


def _rows(entries: Iterable[ZooEntry], cache_dir: str | Path | None) -> list[tuple[str, ...]]:
    rows = [("name", "architecture", "stems", "size", "SDR (dB, as published)", "licence", "downloaded")]
    for e in entries:
        known = sum(f.size or 0 for f in e.files)
        size = f"{known / 1e6:.0f} MB" if e.size is not None else f"{known / 1e6:.0f} MB+" if known else "unknown"
        rows.append((e.name, e.architecture, ",".join(e.stems), size, e.sdr or "unknown", e.licence or "unknown",
                     "yes" if is_downloaded(e, cache_dir) else "no"))
    return rows


def run_list(args: argparse.Namespace) -> int:
    entries = list_checkpoints()
    rows = _rows(entries, args.cache_dir)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    if args.verbose:
        for e in entries:
            print(f"\n{e.name}: {e.notes}".rstrip())
            print(f"  SDR source: {e.sdr_source or 'unknown'}")
            for f in e.files:
                hash_text = f"{f.sha256}{'...' if len(f.sha256) < 64 else ''}" if f.sha256 else "unknown"
                print(f"  {f.url}  sha256 {hash_text}" + (f" ({f.sha256_source})" if f.sha256_source else ""))
    else:
        print("(-v for URLs, sha256 and SDR sources)")
    return 0


def run_download(args: argparse.Namespace) -> int:
    entry = find(args.name)
    if entry is None:
        raise ModelError(f"unknown zoo model {args.name!r}; known: {', '.join(e.name for e in CATALOGUE)}")
    folder = download(entry, args.cache_dir, progress=not args.quiet, mirror=args.mirror, timeout=args.timeout)
    print(f"{entry.name}: {folder}")
    return 0


def register_subcommands(models_subparsers: argparse._SubParsersAction) -> None:
    """Add ``list`` and ``download`` under the lead's ``stemforge models`` command."""
    p = models_subparsers.add_parser("list", help="list known public checkpoints (model zoo)")
    p.add_argument("-v", "--verbose", action="store_true", help="also print URLs, sha256 and SDR sources")
    p.add_argument("--cache-dir", default=None, help="zoo cache (default: $STEMFORGE_CACHE or the user cache dir's stemforge/zoo)")
    p.set_defaults(func=run_list)
    d = models_subparsers.add_parser("download", help="download a zoo checkpoint into the cache (resumes, checks sha256)")
    d.add_argument("name", help="zoo name, see 'stemforge models list'")
    d.add_argument("--cache-dir", default=None, help="zoo cache (default: $STEMFORGE_CACHE or the user cache dir's stemforge/zoo)")
    d.add_argument("--mirror", default=None, help="base URL of a mirror holding the same file names")
    d.add_argument("--timeout", type=float, default=30.0, help="seconds without data before giving up (default 30)")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=run_download)


__all__ = ["CATALOGUE", "ZooEntry", "ZooFile", "download", "list_checkpoints", "load",
           "register_subcommands", "resolve_model", "verify"]

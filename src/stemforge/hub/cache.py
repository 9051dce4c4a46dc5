"""The zoo's download cache: where checkpoints live on disk, verified downloads and verified reads.

Files land in ``<cache>/<name>/`` (``$STEMFORGE_CACHE`` or ``~/.cache/stemforge/zoo``); an interrupted download
resumes with an HTTP Range request. A download is hashed as it arrives and only a file with the catalogue's size
and hash gets its final name; ``verify`` checks a cached file again before it is read (a stamp beside it saves
re-hashing an unchanged file), so a file placed by hand is checked too.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import ssl
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

from stemforge.errors import ModelError
from stemforge.hub import catalogue
from stemforge.hub.catalogue import ZooEntry, ZooFile


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


def offline_hint(entry: ZooEntry, folder: Path) -> str:
    urls = " ".join(f.url for f in entry.files)
    return f"download {urls} and put the file(s) in {folder}"


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
        found = catalogue.find(entry)
        if found is None:
            raise ModelError(f"unknown zoo model {entry!r}; known: {', '.join(e.name for e in catalogue.CATALOGUE)}")
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


#: Seconds a connectivity probe may take, name lookup included (an offline machine falls back at once).
PROBE_TIMEOUT = 1.5
_probes: dict[str, bool] = {}


def reachable(url: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether ``url``'s server answers an HTTP ``HEAD`` request within ``timeout`` seconds (name lookup, proxy,
    TLS handshake with certificate check included); the answer is remembered per server for the process.

    Any HTTP answer counts (even 404: the server is there, a download will say what is wrong). The request runs
    in a daemon thread that is abandoned at the deadline, so a resolver or a firewall that hangs costs ``timeout``,
    not the 30 s or more of a system default; a machine whose connections are intercepted fails the certificate
    check and counts as offline.

    Args:
        url: the URL a download would fetch.
        timeout: seconds to wait at most.

    Returns:
        True if the server answered in time.
    """
    parts = urllib.parse.urlsplit(url)
    key = f"{parts.scheme}://{parts.netloc}"
    if key in _probes:
        return _probes[key]
    answered: list[bool] = []

    def probe() -> None:
        request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "stemforge"})
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                answered.append(True)
        except urllib.error.HTTPError:
            answered.append(True)
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException):
            answered.append(False)

    thread = threading.Thread(target=probe, name="stemforge-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    _probes[key] = bool(answered and answered[0])
    return _probes[key]


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

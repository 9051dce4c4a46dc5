"""``stemforge separate``: write one file per stem for each input file (directories are walked)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Iterator

from stemforge.audio import AUDIO_EXTENSIONS, BIT_DEPTHS, CLIP_MODES, MP3_BITRATE_RANGE, OUTPUT_FORMATS, OutputExistsError
from stemforge.errors import StemforgeError

STEM_FORMAT = "stem.mp4"  # stemforge.stemfile.STEM_FORMAT, spelled here so --help needs no torch


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("separate", help="separate audio files into stems", allow_abbrev=False,
                              description="Separate audio files into stems. Output: DIR/<model>/<track>/<stem>.<ext>. "
                                          "Demucs' flags work too (--mp3, --flac, --int24, --float32, -j, ...).")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files or directories (walked for audio files)")
    p.add_argument("-o", "--out", default="separated", metavar="DIR", help="output directory (default: separated)")
    add_separation_arguments(p, separate=True)
    p.set_defaults(func=run)


def add_separation_arguments(p: argparse.ArgumentParser, separate: bool = False) -> None:
    """The model, engine and output options (everything but the inputs and ``-o``), shared with ``batch``.

    Args:
        p: the subcommand's parser.
        separate: also the options only ``separate`` has (the best-model default and ``--offline``, NI Stems
            files, DAW sessions); ``batch`` runs the named model (``default``: the bundled one).
    """
    if separate:
        p.add_argument("-n", "--name", metavar="MODEL",
                       help="model: a name from `stemforge models` ('default': the bundled one) or a checkpoint file "
                            "(default: the best available: HTDemucs from the cache, downloaded once where there is "
                            "network, else the bundled model)")
        p.add_argument("--offline", action="store_true",
                       help="without -n, use the bundled model: no download, no network probe (also STEMFORGE_OFFLINE=1)")
    else:
        p.add_argument("-n", "--name", default="default", metavar="MODEL",
                       help="model: 'default', a name from `stemforge models`, or a checkpoint file")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--two-stems", metavar="STEM", help="write only STEM and no_STEM (e.g. vocals / no_vocals)")
    group.add_argument("--stems", metavar="A,B", help="comma-separated subset of stems to write")
    p.add_argument("--segment", type=float, metavar="S", help="segment length in seconds (default: the model's)")
    p.add_argument("--overlap", type=float, metavar="O",
                   help="overlap between segments, 0..1 (default: the model's, 0.25 for most)")
    p.add_argument("--shifts", type=int, default=0, metavar="N", help="random-shift test-time augmentation passes (default 0)")
    p.add_argument("--batch-size", type=int, default=1, metavar="B", help="segments per model call (default 1)")
    p.add_argument("-d", "--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--precision", choices=("fp32", "bf16", "int8"), default="fp32",
                   help="bf16: autocast on CUDA; int8: CPU fast path, int8 Linear layers inside Transformer blocks "
                        "(RoFormer, HTDemucs; close to but not equal to fp32, see README Speed)")
    p.add_argument("--backend", choices=("auto", "torch", "onnx", "compile"), default="auto",
                   help="inference backend (default auto: a plain U-Net such as the bundled model with default "
                        "engine options runs on numpy and onnxruntime without loading torch, the same stems "
                        "sooner; anything else on torch)")
    p.add_argument("--wiener", type=int, default=0, metavar="N",
                   help="multichannel Wiener EM post-filter iterations for spectrogram networks (default 0: off)")
    p.add_argument("-j", "--jobs", type=int, metavar="N",
                   help="parallel jobs, as in Demucs: stems encoded at once (default: one per stem, up to the "
                        "number of CPUs)" + ("; for several files at once use `stemforge batch --workers N`" if separate else ""))
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for the model (default: all cores)")
    fmt = p.add_mutually_exclusive_group()
    if separate:
        fmt.add_argument("--format", dest="fmt", choices=(*OUTPUT_FORMATS, STEM_FORMAT), default="wav",
                         help=f"output format (default wav); {STEM_FORMAT}: one NI Stems file per track (AAC, or "
                              "ALAC with --bits 24) at DIR/<model>/<track>.stem.mp4")
    else:
        fmt.add_argument("--format", dest="fmt", choices=OUTPUT_FORMATS, default="wav", help="output format (default wav)")
    fmt.add_argument("--mp3", dest="fmt", action="store_const", const="mp3", help="same as --format mp3 (Demucs)")
    fmt.add_argument("--flac", dest="fmt", action="store_const", const="flac", help="same as --format flac (Demucs)")
    bits = p.add_mutually_exclusive_group()
    bits.add_argument("--bits", choices=BIT_DEPTHS,
                      help="bit depth of wav/flac: 16 (default), 24 or 32f (float, wav only)")
    bits.add_argument("--int24", dest="bits", action="store_const", const="24", help="same as --bits 24 (Demucs)")
    bits.add_argument("--float32", dest="bits", action="store_const", const="32f", help="same as --bits 32f (Demucs)")
    p.add_argument("--mp3-bitrate", type=int, metavar="K",
                   help=f"mp3 bitrate in kbit/s, {MP3_BITRATE_RANGE[0]} to {MP3_BITRATE_RANGE[1]} (default 320)")
    p.add_argument("--clip-mode", choices=CLIP_MODES, default="rescale",
                   help="avoid clipping by scaling a stem down (rescale, default) or hard-limiting (clamp; 'none' "
                        "is the same: integer samples and mp3 cannot go past full scale, 32-bit float is never limited)")
    p.add_argument("--keep-rate", action="store_true", help="write stems at the input's sample rate")
    p.add_argument("--keep-channels", action="store_true", help="write stems with the input's channel layout")
    p.add_argument("--filename", default="{track}/{stem}.{ext}",
                   help="output name template inside DIR/<model> with {track} (file name without extension), "
                        "{trackext} (with it), {stem}, {ext} and {relpath} (the track's folder relative to the "
                        "input directory) (default {track}/{stem}.{ext})")
    existing = p.add_mutually_exclusive_group()
    existing.add_argument("-f", "--force", action="store_true", help="overwrite existing outputs")
    existing.add_argument("--skip-existing", action="store_true",
                          help="skip a track whose stems all exist already (a re-run of a batch)")
    if separate:
        p.add_argument("--session", choices=("ardour", "reaper"),
                       help="also write a DAW session beside each track's stems (as `stemforge session` does)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true",
                   help="print a JSON summary on stdout (per input: status ok, skipped or error, output paths or the "
                        "error); no progress bar")


def find_inputs(inputs: list[str]) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Expand directories into their audio files.

    Args:
        inputs: files and directories as given on the command line.

    Returns:
        ``(tracks, problems)``: tracks are ``(file, folder relative to the input directory)`` (``.`` for files
        given directly), problems one-line messages for directories without audio.
    """
    tracks: list[tuple[Path, Path]] = []
    problems: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
            if not found:
                problems.append(f"{path}: directory contains no audio files")
            tracks.extend((p, p.parent.relative_to(path)) for p in found)
        else:
            tracks.append((path, Path(".")))  # missing or bad files are reported when opened, one by one
    return tracks, problems


def _inputs(inputs: list[str]) -> tuple[list[tuple[Path, Path]], list[dict]]:
    """``find_inputs``, with one ``error:`` line per input that cannot be read.

    Returns:
        (tracks to separate, one ``--json`` result per unreadable input, status "error").
    """
    tracks, problems = find_inputs(inputs)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return tracks, [{"input": problem.split(": ", 1)[0], "status": "error", "error": problem} for problem in problems]


def run(args: argparse.Namespace) -> int:
    from stemforge.separate import check_filename_template

    if args.fmt == STEM_FORMAT:
        return run_stem_files(args)
    check_filename_template(args.filename)  # before loading a model or reading anything
    output = output_options(args)
    output.validate()  # every output option, in one line, before a model is loaded
    tracks, results = _inputs(args.inputs)
    if not tracks:
        return 1
    separator = _separator(args)
    tracks = _check_collisions(separator, output, tracks)
    total = len(tracks) + len(results)  # inputs named, readable or not
    failed, skipped = len(results), 0
    with _signals_interrupt():
        for path, relpath in tracks:
            if args.skip_existing:
                targets = separator.output_paths(path, output, relpath)
                if all(p.exists() for p in targets.values()):
                    skipped += 1
                    results.append({"input": str(path), "status": "skipped",
                                    "outputs": {stem: str(p) for stem, p in targets.items()}})
                    if not args.json:
                        print(f"{path}: skipped, its {len(targets)} stems exist")
                    continue
            try:
                if args.session:  # refuse an existing session before separating
                    session = _session_hook(args, separator.output_paths(path, output, relpath), path)
                written = separator.separate_file(path, output, progress=not (args.quiet or args.json), relpath=relpath)
                if args.session:
                    session = _session_hook(args, written, path, write=True)
            except OutputExistsError as exc:
                if not args.skip_existing:  # another run finished it while we waited for its lock
                    print(f"error: {exc}", file=sys.stderr)
                    results.append({"input": str(path), "status": "error", "error": str(exc)})
                    failed += 1
                    continue
                skipped += 1
                targets = separator.output_paths(path, output, relpath)
                results.append({"input": str(path), "status": "skipped",
                                "outputs": {stem: str(p) for stem, p in targets.items()}})
                continue
            except StemforgeError as exc:
                print(f"error: {exc}", file=sys.stderr)
                results.append({"input": str(path), "status": "error", "error": str(exc)})
                failed += 1
                continue
            results.append({"input": str(path), "status": "ok", "outputs": {stem: str(p) for stem, p in written.items()}})
            if args.session:
                results[-1]["session"] = str(session)
            if not args.json:
                folder = sorted({str(p.parent) for p in written.values()})
                print(f"{path}: {len(written)} stems -> {', '.join(folder)}" + (f", session {session}" if args.session else ""))
    if skipped and not args.json:
        print(f"{skipped} of {total} inputs skipped (all stems already there)")
    if failed:
        print(f"{failed} of {total} inputs failed", file=sys.stderr)
    if args.json:
        json.dump({"model": separator.name, "failed": failed, "skipped": skipped, "inputs": results}, sys.stdout,
                  indent=2)
        print()
    return 1 if failed else 0


def _session_hook(args: argparse.Namespace, stems: dict[str, Path], track: Path, write: bool = False) -> Path:
    """``--session``: before separating, refuse an existing session (unless --force); after, write it."""
    from stemforge.daw import SessionError, separated_session_target, write_stem_session

    if write:
        return write_stem_session(stems, args.session, track, force=args.force)
    target = separated_session_target(args.session, stems, track)
    if target.exists() and not args.force:
        raise SessionError(f"{track}: session {target} already exists (use --force to replace it)")
    return target


def output_options(args: argparse.Namespace):  # -> stemforge.separate.OutputOptions (imported here: torch)
    """The ``OutputOptions`` that ``add_separation_arguments``' flags ask for (not yet validated)."""
    from stemforge.separate import OutputOptions

    stems = tuple(s.strip() for s in args.stems.split(",") if s.strip()) if args.stems else None
    return OutputOptions(directory=Path(args.out), fmt=args.fmt, bits=args.bits, mp3_bitrate=args.mp3_bitrate,
                         clip=args.clip_mode, filename=args.filename, keep_rate=args.keep_rate,
                         keep_channels=args.keep_channels, stems=stems, two_stems=args.two_stems, force=args.force,
                         jobs=args.jobs)


def _check_collisions(separator, output, tracks: list[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
    """Drop repeated inputs; refuse, before any work, two inputs that would write the same output file."""
    owners: dict[str, Path] = {}
    seen: set[str] = set()
    unique = []
    for path, relpath in tracks:
        key = os.path.normcase(os.path.abspath(path))
        if key in seen:
            continue
        seen.add(key)
        unique.append((path, relpath))
        for target in separator.output_paths(path, output, relpath).values():
            other = owners.setdefault(os.path.normcase(os.path.abspath(target)), path)
            if other != path:
                raise StemforgeError(f"{other} and {path} would both be written to {target}; add {{relpath}} to "
                                     "--filename (e.g. '{relpath}/{track}/{stem}.{ext}') or separate them apart")
    return unique


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """Make SIGTERM and SIGHUP interrupt like Ctrl-C, so a killed run cleans up its temporary files.

    A signal whose handler is not the default is left alone (``nohup`` ignores SIGHUP, and must keep doing so).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) == signal.SIG_DFL:
            previous[sig] = signal.signal(sig, interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _separator(args: argparse.Namespace, needs: str = "files"):  # -> stemforge.separate.FileSeparator
    """The separator the flags ask for (``stemforge.separate.open_separator``, which decides from ``--backend``
    and ``needs`` whether the torch-free runtime serves); without ``-n``, the best model available
    (``stemforge.hub.best_model``).
    """
    from stemforge.separate import open_separator

    if args.name is None:
        from stemforge.hub import best_model

        args.name = best_model(offline=args.offline, progress=not (args.quiet or args.json))
    return open_separator(args.name, backend=args.backend, needs=needs, segment=args.segment, overlap=args.overlap,
                          shifts=args.shifts, batch_size=args.batch_size, device=args.device,
                          precision=args.precision, threads=args.threads, wiener=args.wiener)


def run_stem_files(args: argparse.Namespace) -> int:
    """``separate --format stem.mp4``: one NI Stems file per input (``stemforge.stemfile``)."""
    from stemforge.separate import OutputOptions
    from stemforge.stemfile import codec_for_bits, separate_to_stem_file, stem_file_path

    codec_for_bits(args.bits)
    for flag, value in (("--mp3-bitrate", args.mp3_bitrate), ("--stems", args.stems), ("--two-stems", args.two_stems)):
        if value is not None:
            raise StemforgeError(f"{flag} does not apply to --format {STEM_FORMAT} (it holds the master and all four stems)")
    if args.filename != "{track}/{stem}.{ext}":
        raise StemforgeError(f"--filename does not apply to --format {STEM_FORMAT}: it writes DIR/<model>/<track>.stem.mp4")
    output = OutputOptions(directory=Path(args.out), bits=args.bits, clip=args.clip_mode, keep_rate=args.keep_rate,
                           keep_channels=args.keep_channels, force=args.force, jobs=args.jobs)
    tracks, results = _inputs(args.inputs)
    if not tracks:
        return 1
    separator = _separator(args, needs="separator")  # separate_to_stem_file takes a Separator
    total = len(tracks) + len(results)  # inputs named, readable or not
    failed, skipped = len(results), 0
    unique: dict[str, tuple[Path, Path]] = {}
    for path, relpath in tracks:  # a file named twice is separated once
        unique.setdefault(os.path.normcase(os.path.abspath(path)), (path, relpath))
    with _signals_interrupt():
        for path, relpath in unique.values():
            target = stem_file_path(separator.name, path, output.directory, relpath)
            if args.skip_existing and target.exists():
                skipped += 1
                results.append({"input": str(path), "status": "skipped", "outputs": {STEM_FORMAT: str(target)}})
                if not args.json:
                    print(f"{path}: skipped, {target} exists")
                continue
            try:
                separate_to_stem_file(separator, path, output, relpath=relpath, progress=not (args.quiet or args.json))
            except StemforgeError as exc:
                print(f"error: {exc}", file=sys.stderr)
                results.append({"input": str(path), "status": "error", "error": str(exc)})
                failed += 1
                continue
            results.append({"input": str(path), "status": "ok", "outputs": {STEM_FORMAT: str(target)}})
            if not args.json:
                print(f"{path}: -> {target}")
    if failed:
        print(f"{failed} of {total} inputs failed", file=sys.stderr)
    if args.json:
        json.dump({"model": separator.name, "failed": failed, "skipped": skipped, "inputs": results}, sys.stdout, indent=2)
        print()
    return 1 if failed else 0

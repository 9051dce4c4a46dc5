"""Evaluation reports: per-track/per-stem tables (CSV, JSON, Markdown) and plots (PNG).

Input is the list of per-track results of ``stemforge.evaluate.evaluate``. Aggregation follows museval
/ SiSEC: a track's score is the median over its windows (done when scoring), a method's score on a
stem is the median over tracks (NaN tracks ignored).

Columns (``LEGEND``; also written under each Markdown table and as ``legend`` in report.json):
SDR/ISR/SIR/SAR are BSS Eval v4 image metrics (museval), MDX_SDR the Music Demixing Challenge SDR,
SI_SDR the scale-invariant SDR, SNR the framewise signal-to-noise ratio, all in dB, higher is better;
RTF is the real-time factor (seconds spent producing the estimates per second of audio). A blank cell
is a metric that means nothing by construction for that method (``stemforge.evaluate.DEGENERATE``,
e.g. SAR of the mixture); ``nan`` is a metric with no scorable window (a stem silent throughout).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from stemforge.metrics.bss_eval import nanmedian

METRIC_ORDER = ("SDR", "ISR", "SIR", "SAR", "MDX_SDR", "SI_SDR", "SNR")
#: What each column of the tables means.
LEGEND = {
    "method": "model, estimates folder or reference point (oracle-irm/-ibm/-mwf: upper bounds computed from the "
              "true stems; mixture: the mixture as every stem, a lower bound; classical: the DSP model)",
    "tracks": "number of tracks scored",
    "SDR": "signal-to-distortion ratio, BSS Eval v4 (museval): all errors together; median over 1 s windows, "
           "then over tracks; dB, higher is better",
    "ISR": "source-image-to-spatial-distortion ratio (BSS Eval v4): error in the stem's own filtered image; dB",
    "SIR": "source-to-interference ratio (BSS Eval v4): leakage of the other stems; dB",
    "SAR": "source-to-artifacts ratio (BSS Eval v4): errors that no filtering of the stems explains "
           "(musical noise, distortion); dB",
    "MDX_SDR": "Music Demixing Challenge SDR over the whole track, 10 log10((|s|^2 + 1e-7) / (|s - e|^2 + 1e-7)); dB",
    "SI_SDR": "scale-invariant SDR over the whole track (reference scaled by the best gain); dB",
    "SNR": "signal-to-noise ratio per window, median over windows; dB",
    "RTF": "real-time factor: seconds spent producing the estimates per second of audio (0.5 = twice as fast as "
           "real time); for reference points the time to compute them from the true stems, for an estimates "
           "folder the time to check its files",
    "rtf": "same as RTF",
}


def _degenerate(method: str) -> tuple[tuple[str, ...], str]:
    from stemforge.evaluate import DEGENERATE

    return DEGENERATE.get(method, ((), ""))


def rows(results: list[dict]) -> list[dict]:
    """One row per (method, track, stem) with every metric present (None where undefined)."""
    metrics = present_metrics(results)
    out = []
    for result in results:
        blank = _degenerate(result["method"])[0]
        for stem, scores in result["stems"].items():
            row = {"method": result["method"], "track": result["track"], "stem": stem}
            row.update({m: None if m in blank else scores.get(m) for m in metrics})
            out.append(row)
    return out


def present_metrics(results: list[dict]) -> list[str]:
    found = {m for r in results for s in r["stems"].values() for m in s}
    return [m for m in METRIC_ORDER if m in found]


def methods_in_order(results: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["method"] for r in results))


def stems_in_order(results: list[dict]) -> list[str]:
    return list(dict.fromkeys(s for r in results for s in r["stems"]))


def summary(results: list[dict]) -> list[dict]:
    """Median over tracks per (method, stem), plus real-time factor of the method (separation time / audio)."""
    metrics = present_metrics(results)
    table = []
    for method in methods_in_order(results):
        mine = [r for r in results if r["method"] == method]
        audio = sum(r.get("seconds", 0.0) for r in mine)
        rtf = sum(r.get("separation_seconds", 0.0) for r in mine) / audio if audio else float("nan")
        for stem in stems_in_order(mine):
            row = {"method": method, "stem": stem, "tracks": sum(stem in r["stems"] for r in mine), "rtf": rtf}
            for metric in metrics:
                values = np.array([_f(r["stems"][stem].get(metric)) for r in mine if stem in r["stems"]])
                row[metric] = float(nanmedian(values)) if values.size else float("nan")
                if metric in _degenerate(method)[0]:
                    row[metric] = None  # meaningless by construction: blank, not a number
            table.append(row)
    return table


def _f(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "nan" if np.isnan(value) else f"{value:.2f}"
    return "" if value is None else str(value)


def write_tables(results: list[dict], out: Path) -> dict[str, Path]:
    """scores.csv (per track/stem), summary.csv, report.json and report.md under ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    per_track, agg = rows(results), summary(results)
    paths = {"scores": out / "scores.csv", "summary": out / "summary.csv", "json": out / "report.json",
             "markdown": out / "report.md"}
    for path, table in ((paths["scores"], per_track), (paths["summary"], agg)):
        with path.open("w", newline="") as f:
            if table:
                writer = csv.DictWriter(f, fieldnames=list(table[0]))
                writer.writeheader()
                writer.writerows({k: _fmt(v) for k, v in row.items()} for row in table)
    clean = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()} for row in agg]
    legend = {k: v for k, v in LEGEND.items() if k != "RTF"}
    legend.update(_blank_reasons(results))
    paths["json"].write_text(json.dumps({"legend": legend, "summary": clean, "tracks": results}, indent=1))
    paths["markdown"].write_text(markdown(results))
    return paths


def _blank_reasons(results: list[dict]) -> dict[str, str]:
    """"blank (<method>)" -> why its blank metrics mean nothing, for the methods present."""
    out = {}
    for method in methods_in_order(results):
        blank, why = _degenerate(method)
        if blank:
            out[f"blank ({method})"] = f"{'/'.join(blank)} left out: {why}"
    return out


def _legend(columns: list[str], results: list[dict], blanks: bool = True) -> str:
    """Markdown lines explaining ``columns`` (those with a ``LEGEND`` entry) and the blank cells."""
    lines = [f"- **{c}**: {LEGEND[c]}" for c in columns if c in LEGEND]
    if blanks:
        lines += [f"- **{key}**: {why}" for key, why in _blank_reasons(results).items()]
    return "\n".join(lines)


def markdown(results: list[dict]) -> str:
    """Report text: SDR per method x stem (the comparison table), then per-metric summary and per-track SDR."""
    agg = summary(results)
    metrics = present_metrics(results)
    methods, stems = methods_in_order(results), stems_in_order(results)
    lines = ["# Evaluation report", ""]
    key = "SDR" if "SDR" in metrics else (metrics[0] if metrics else None)
    if key:
        lines += [f"## {key} (dB, median over tracks)", "", _table(
            ["method", *stems, "RTF"],
            [[m, *[_fmt(_lookup(agg, m, s, key)) for s in stems], _fmt(_lookup(agg, m, None, "rtf"))] for m in methods]),
            "", _legend([key, "RTF"], results, blanks=key in {m for r in results for m in _degenerate(r["method"])[0]})]
    lines += ["", "## All metrics (median over tracks)", "",
              _table(["method", "stem", "tracks", *metrics], [[r["method"], r["stem"], str(r["tracks"]),
                                                               *[_fmt(r[m]) for m in metrics]] for r in agg]),
              "", _legend(["tracks", *metrics], results)]
    if key:
        tracks = list(dict.fromkeys(r["track"] for r in results))
        lines += ["", f"## {key} per track (dB, mean over stems of the track medians)", ""]
        body = []
        for track in tracks:
            cells = []
            for method in methods:
                found = [r for r in results if r["method"] == method and r["track"] == track]
                values = [_f(v.get(key)) for r in found for v in r["stems"].values()]
                cells.append(_fmt(float(np.nanmean(values)) if values and not np.all(np.isnan(values)) else float("nan")))
            body.append([track, *cells])
        lines += [_table(["track", *methods], body), "", _legend([key], results, blanks=False)]
    return "\n".join(lines) + "\n"


def _lookup(agg: list[dict], method: str, stem: str | None, key: str) -> float | str:
    for row in agg:
        if row["method"] == method and (stem is None or row["stem"] == stem):
            return row[key]
    return "-"  # the method has no such stem


def _table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def require_plotting():  # noqa: ANN201 - the matplotlib module
    """matplotlib, the optional ``report`` extra, or a one-line error naming the extra.

    Returns:
        The ``matplotlib`` module.

    Raises:
        MissingExtraError: matplotlib is not installed (``pip install 'stemforge[report]'``).
    """
    from stemforge.extras import require

    return require("matplotlib", "report", "evaluation plots (use --no-plots to skip them)")


def write_plots(results: list[dict], out: Path, metric: str = "SDR") -> list[Path]:
    """sdr_boxplot.png (per stem and method), track_sdr.png (per-track bars), spectrogram_<method>.png."""
    matplotlib = require_plotting()
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    if metric not in present_metrics(results):
        metric = (present_metrics(results) or ["SDR"])[0]
    methods, stems = methods_in_order(results), stems_in_order(results)
    written = []

    fig, axes = plt.subplots(1, len(stems), figsize=(3.2 * len(stems) + 1, 4), squeeze=False, sharey=True)
    for ax, stem in zip(axes[0], stems):
        data = [[_f(r["stems"][stem].get(metric)) for r in results if r["method"] == m and stem in r["stems"]]
                for m in methods]
        data = [[v for v in d if not np.isnan(v)] or [np.nan] for d in data]
        ax.boxplot(data, showfliers=True)
        ax.set_xticks(range(1, len(methods) + 1), methods, rotation=60, ha="right", fontsize=7)
        ax.set_title(stem)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel(f"{metric} (dB)")
    fig.tight_layout()
    written.append(plots / f"{metric.lower()}_boxplot.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)

    tracks = list(dict.fromkeys(r["track"] for r in results))
    fig, axes = plt.subplots(len(stems), 1, figsize=(max(6, 0.6 * len(tracks) * len(methods) / 3 + 4), 2.2 * len(stems)),
                             squeeze=False, sharex=True)
    width = 0.8 / max(1, len(methods))
    for ax, stem in zip(axes[:, 0], stems):
        for i, method in enumerate(methods):
            values = []
            for track in tracks:
                found = [r for r in results if r["method"] == method and r["track"] == track and stem in r["stems"]]
                values.append(_f(found[0]["stems"][stem].get(metric)) if found else np.nan)
            ax.bar(np.arange(len(tracks)) + i * width, values, width, label=method)
        ax.set_ylabel(f"{stem}\n{metric} (dB)")
        ax.grid(axis="y", alpha=0.3)
    axes[-1, 0].set_xticks(np.arange(len(tracks)) + 0.4 - width / 2, tracks, rotation=45, ha="right", fontsize=7)
    axes[0, 0].legend(fontsize=6, ncol=min(4, len(methods)))
    fig.tight_layout()
    written.append(plots / f"track_{metric.lower()}.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)

    for method in methods:
        kind = next(r.get("kind") for r in results if r["method"] == method)
        excerpt = result_dir(out, method) / "excerpt.npz"
        if kind == "reference" and method != "classical" or not excerpt.exists():
            continue
        written.append(plots / f"spectrogram_{method}.png")
        _spectrogram_plot(excerpt, written[-1], method)
    return written


def result_dir(out: Path, method: str) -> Path:
    from stemforge.evaluate import result_path

    return result_path(out, method, "x").parent


def _spectrogram_plot(excerpt: Path, path: Path, method: str) -> None:
    import matplotlib.pyplot as plt
    from scipy.signal import stft

    data = np.load(excerpt)
    rate = int(data["sample_rate"])
    stems = [k[4:] for k in data.files if k.startswith("ref_")]
    fig, axes = plt.subplots(len(stems), 2, figsize=(10, 2.2 * len(stems)), squeeze=False, sharex=True, sharey=True)
    for row, stem in enumerate(stems):
        for col, prefix in enumerate(("ref", "est")):
            freqs, times, spec = stft(data[f"{prefix}_{stem}"].mean(0), fs=rate, nperseg=2048, noverlap=1536)
            db = 20 * np.log10(np.abs(spec) + 1e-6)
            ax = axes[row, col]
            ax.pcolormesh(times, freqs / 1000, db, vmin=db.max() - 80, vmax=db.max(), shading="auto")
            ax.set_title(f"{stem}: {'reference' if prefix == 'ref' else method}", fontsize=8)
            ax.set_ylim(0, min(rate / 2000, 11))
        axes[row, 0].set_ylabel("kHz")
    fig.suptitle(f"{data['track']}: reference vs estimate")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)

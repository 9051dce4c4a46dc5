"""End to end: score a tiny synthetic MUSDB-style dataset with the classical model and reference points."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import lfilter

from stemforge.cli import main
from stemforge.evaluate import (EvaluateOptions, Method, Track, estimates_method, evaluate, model_method,
                                reference_method, references_for, score_track)
from stemforge.metrics import MetricsError, ideal_binary_mask, oracle_wiener
from stemforge.report import write_plots, write_tables

SR = 44100
STEMS = ("drums", "bass", "other", "vocals")


def make_dataset(root: Path, tracks: int = 2, seconds: float = 1.5) -> dict[str, dict[str, np.ndarray]]:
    """Noise-based stems with distinct spectra and envelopes: clicky drums, low bass, mid 'other', and a
    high, tremolo 'voice' entering at 0.5 s (so some windows have a silent source)."""
    rng = np.random.default_rng(0)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    data = {}
    for i in range(tracks):
        noise = lambda pole: lfilter([1.0 - abs(pole)], [1.0, -pole], rng.standard_normal((2, n)), axis=-1)
        stems = {
            "drums": 0.3 * np.exp(-((t * 4) % 1) * 30) * rng.standard_normal((2, n)),
            "bass": 3.0 * noise(0.995),
            "other": 0.5 * lfilter([1.0, 0.0, -1.0], [1.0, -1.6, 0.8], rng.standard_normal((2, n)), axis=-1) / 4,
            "vocals": 0.1 * noise(-0.8) * (t > 0.5) * (1 + 0.5 * np.sin(2 * np.pi * 5 * t)),
        }
        stems = {k: v.astype(np.float32) for k, v in stems.items()}
        folder = root / f"song{i}"
        folder.mkdir(parents=True)
        for name, wav in stems.items():
            sf.write(folder / f"{name}.wav", wav.T, SR, subtype="FLOAT")
        sf.write(folder / "mixture.wav", sum(stems.values()).T, SR, subtype="FLOAT")
        data[f"song{i}"] = stems
    return data


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_evaluate_end_to_end_with_references_tables_plots_and_resume(tmp_path: Path) -> None:
    truth = make_dataset(tmp_path / "data")
    out = tmp_path / "report"
    options = EvaluateOptions(metrics=("bss", "mdx", "sisdr"), progress=False)
    calls = []

    def counting_mixture(track: Track) -> dict[str, np.ndarray]:
        calls.append(track.name)
        return {s: track.mixture.copy() for s in track.stems}

    methods = [model_method("classical", options), reference_method("oracle-irm", options),
               Method("mixture", counting_mixture, kind="reference")]
    results = evaluate(tmp_path / "data", methods, out, options)
    assert len(results) == 3 * 2 and calls == ["song0", "song1"]

    # The mixture as estimate: MDX SDR is |s|^2 / |mix - s|^2, computed by hand.
    for result in results:
        if result["method"] != "mixture":
            continue
        stems = truth[result["track"]]
        mix = sum(stems.values()).astype(np.float64)
        for stem, ref in stems.items():
            ref = ref.astype(np.float64)
            hand = 10 * np.log10((np.sum(ref**2) + 1e-7) / (np.sum((mix - ref) ** 2) + 1e-7))
            assert result["stems"][stem]["MDX_SDR"] == pytest.approx(hand, abs=1e-3)
            assert len(result["frames"][stem]["SDR"]) == 1  # 1.5 s -> one whole 1 s window

    paths = write_tables(results, out)
    rows = read_rows(paths["scores"])
    assert len(rows) == 3 * 2 * 4
    assert set(rows[0]) == {"method", "track", "stem", "SDR", "ISR", "SIR", "SAR", "MDX_SDR", "SI_SDR"}
    summary = {(r["method"], r["stem"]): r for r in read_rows(paths["summary"])}
    for stem in STEMS:  # the oracle is an upper bound, the mixture a lower bound
        assert float(summary[("oracle-irm", stem)]["SDR"]) > float(summary[("mixture", stem)]["SDR"])
        assert float(summary[("oracle-irm", stem)]["SDR"]) > float(summary[("classical", stem)]["SDR"])
    report = json.loads(paths["json"].read_text())
    assert {r["method"] for r in report["summary"]} == {"classical", "oracle-irm", "mixture"}
    assert "| classical |" in paths["markdown"].read_text()
    plots = write_plots(results, out)
    assert {p.name for p in plots} >= {"sdr_boxplot.png", "track_sdr.png", "spectrogram_classical.png"}
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in plots)

    # Resume: scored tracks are read back, not separated again.
    again = evaluate(tmp_path / "data", methods[2:], out, options)
    assert calls == ["song0", "song1"] and again == [r for r in results if r["method"] == "mixture"]


def test_estimates_folder_scores_and_mismatch_errors(tmp_path: Path) -> None:
    truth = make_dataset(tmp_path / "data", tracks=1)
    est_dir = tmp_path / "half"
    (est_dir / "song0").mkdir(parents=True)
    for stem, wav in truth["song0"].items():
        sf.write(est_dir / "song0" / f"{stem}.wav", (0.5 * wav).T, SR, subtype="FLOAT")
    options = EvaluateOptions(metrics=("bss", "mdx"), progress=False, resume=False)
    [result] = evaluate(tmp_path / "data", [estimates_method(est_dir)], tmp_path / "out", options)
    for stem in STEMS:  # e = s / 2: |s|^2 / |s / 2|^2 -> 6.02 dB in every window
        assert result["stems"][stem]["MDX_SDR"] == pytest.approx(10 * np.log10(4), abs=1e-3)
    assert result["stems"]["drums"]["SDR"] == pytest.approx(10 * np.log10(4), abs=1e-3)

    sf.write(est_dir / "song0" / "bass.wav", truth["song0"]["bass"][:, :-10].T, SR, subtype="FLOAT")
    with pytest.raises(MetricsError, match=r"length mismatch \(track 'song0', stem 'bass'\)"):
        evaluate(tmp_path / "data", [estimates_method(est_dir)], tmp_path / "out", options)
    sf.write(est_dir / "song0" / "bass.wav", truth["song0"]["bass"].T, 22050, subtype="FLOAT")
    with pytest.raises(MetricsError, match=r"sample rate mismatch \(track 'song0', stem 'bass'\)"):
        evaluate(tmp_path / "data", [estimates_method(est_dir)], tmp_path / "out", options)


def test_two_stem_method_other_is_compared_with_the_rest() -> None:
    stems = {s: np.full((1, 4), i + 1.0) for i, s in enumerate(STEMS)}
    track = Track("t", SR, stems, sum(stems.values()))
    refs = references_for(track, ["vocals", "other"])
    np.testing.assert_array_equal(refs["vocals"], stems["vocals"])
    np.testing.assert_array_equal(refs["other"], stems["drums"] + stems["bass"] + stems["other"])


def test_score_track_shape_mismatch_names_track_and_stem() -> None:
    refs = {"vocals": np.zeros((2, 100)), "drums": np.ones((2, 100))}
    with pytest.raises(MetricsError, match=r"shape mismatch \(track 'x', stem 'drums'\)"):
        score_track("x", refs, {"vocals": np.zeros((2, 100)), "drums": np.ones((1, 100))}, SR)


def test_cli_evaluate_compare_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_dataset(tmp_path / "data", tracks=1)
    out = tmp_path / "report"
    code = main(["evaluate", "--model", "classical", "--compare", "hpss", "--data", str(tmp_path / "data"), "-o", str(out),
                 "--metrics", "mdx", "sisdr", "--no-references", "--no-plots", "-q"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| classical |" in printed and "| hpss |" in printed
    assert (out / "report.md").exists() and (out / "scores" / "hpss" / "song0.json").exists()
    assert main(["evaluate", "--data", str(tmp_path / "data")]) == 1
    assert "give at least one --model" in capsys.readouterr().err
    assert main(["evaluate", "--model", "nope", "--data", str(tmp_path / "data"), "--no-references", "-q"]) == 1
    assert "unknown model" in capsys.readouterr().err


def _museval_v4(refs: np.ndarray, ests: np.ndarray) -> np.ndarray:
    """museval v4 framewise metrics (4, sources, windows) for (sources, channels, time) arrays."""
    from test_metrics import _museval_metrics

    out = _museval_metrics().bss_eval(refs.transpose(0, 2, 1), ests.transpose(0, 2, 1), window=SR, hop=SR,
                                      compute_permutation=False, framewise_filters=False,
                                      bsseval_sources_version=False)
    return np.stack(out[:4])


def test_streamed_scores_equal_in_memory_and_museval_on_a_multi_window_track(tmp_path: Path) -> None:
    truth = make_dataset(tmp_path / "data", tracks=1, seconds=3.5)["song0"]  # 3 whole windows + a dropped partial
    refs = np.stack([truth[s] for s in STEMS])
    ests = 0.7 * refs + 0.1 * refs.sum(0) + 0.01 * np.random.default_rng(1).standard_normal(refs.shape).astype(np.float32)
    (tmp_path / "est" / "song0").mkdir(parents=True)
    for stem, wav in zip(STEMS, ests):
        sf.write(tmp_path / "est" / "song0" / f"{stem}.wav", wav.T, SR, subtype="FLOAT")
    options = EvaluateOptions(metrics=("bss", "mdx", "sisdr", "snr"), progress=False)
    methods = [estimates_method(tmp_path / "est"), reference_method("oracle-mwf", options), reference_method("oracle-ibm", options)]
    results = {r["method"]: r for r in evaluate(tmp_path / "data", methods, tmp_path / "out", options)}
    assert not list((tmp_path / "out").rglob(".scratch-*"))  # temporary estimates are removed

    expected = _museval_v4(refs.astype(np.float64), ests.astype(np.float64))
    for m, metric in enumerate(("SDR", "ISR", "SIR", "SAR")):
        for i, stem in enumerate(STEMS):
            got = np.array([np.nan if v is None else v for v in results["est"]["frames"][stem][metric]])
            assert got.shape == (3,)
            np.testing.assert_allclose(got, expected[m, i], atol=1e-3)
    # The oracles streamed a segment at a time score as the whole-track oracles scored in memory.
    for name, oracle in (("oracle-mwf", oracle_wiener), ("oracle-ibm", ideal_binary_mask)):
        whole = dict(zip(STEMS, oracle(refs)))
        old = score_track("song0", truth, whole, SR, options.metrics)
        for stem in STEMS:
            for metric, value in old["stems"][stem].items():
                assert results[name]["stems"][stem][metric] == pytest.approx(value, abs=1e-3), (name, stem, metric)
            np.testing.assert_allclose(results[name]["frames"][stem]["SNR"], old["frames"][stem]["SNR"], atol=1e-3)


def test_missing_estimates_skip_the_track_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth = make_dataset(tmp_path / "data", tracks=3, seconds=1.0)
    (tmp_path / "est" / "song1").mkdir(parents=True)
    for stem, wav in truth["song1"].items():
        sf.write(tmp_path / "est" / "song1" / f"{stem}.wav", wav.T, SR, subtype="FLOAT")
    out = tmp_path / "report"
    code = main(["evaluate", "--estimates", str(tmp_path / "est"), "--data", str(tmp_path / "data"), "-o", str(out),
                 "--metrics", "mdx", "--no-references", "--no-plots", "-q"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    warning = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "song0" in warning[0] and "song2" in warning[0] and "2 of 3" in warning[0]
    assert "Traceback" not in captured.err
    assert {r["track"] for r in read_rows(out / "scores.csv")} == {"song1"}

    (tmp_path / "none").mkdir()
    code = main(["evaluate", "--estimates", str(tmp_path / "none"), "--data", str(tmp_path / "data"), "-o",
                 str(tmp_path / "r2"), "--no-references", "--no-plots", "-q"])
    assert code == 1
    assert "error: none: no estimates for any of the 3 tracks" in capsys.readouterr().err


def test_report_explains_columns_and_leaves_degenerate_mixture_metrics_blank(tmp_path: Path) -> None:
    make_dataset(tmp_path / "data", tracks=1, seconds=2.0)
    options = EvaluateOptions(progress=False)
    methods = [reference_method("oracle-irm", options), reference_method("mixture", options)]
    results = evaluate(tmp_path / "data", methods, tmp_path / "out", options)
    mixture = next(r for r in results if r["method"] == "mixture")
    for stem in STEMS:
        assert mixture["stems"][stem]["SAR"] is None and mixture["stems"][stem]["ISR"] is None
        assert mixture["stems"][stem]["SIR"] is None and mixture["stems"][stem]["SDR"] is not None
    oracle = next(r for r in results if r["method"] == "oracle-irm")
    assert all(oracle["stems"][s]["SAR"] is not None for s in STEMS)

    paths = write_tables(results, tmp_path / "out")
    summary = {(r["method"], r["stem"]): r for r in read_rows(paths["summary"])}
    assert summary[("mixture", "vocals")]["SAR"] == "" and summary[("mixture", "vocals")]["SDR"] != ""
    report = json.loads(paths["json"].read_text())
    assert {"SDR", "ISR", "SIR", "SAR", "MDX_SDR", "SI_SDR", "rtf", "blank (mixture)"} <= set(report["legend"])
    assert next(r for r in report["summary"] if r["method"] == "mixture")["SAR"] is None
    text = paths["markdown"].read_text()
    assert text.count("- **RTF**: real-time factor") == 1 and "- **SAR**: source-to-artifacts" in text
    assert "- **blank (mixture)**: ISR/SIR/SAR left out" in text
    row = next(line for line in text.splitlines() if line.startswith("| mixture | vocals |"))
    cells = [c.strip() for c in row.strip("|").split("|")]  # method, stem, tracks, SDR, ISR, SIR, SAR, ...
    assert cells[4:7] == ["", "", ""] and cells[3] not in ("", "nan")


def test_resume_rescores_a_torn_result_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    truth = make_dataset(tmp_path / "data", tracks=1, seconds=1.0)
    est_dir = tmp_path / "est"
    (est_dir / "song0").mkdir(parents=True)
    for stem, wav in truth["song0"].items():
        sf.write(est_dir / "song0" / f"{stem}.wav", (0.5 * wav).T, SR, subtype="FLOAT")
    options = EvaluateOptions(metrics=("mdx",), progress=False, references=False)
    [first] = evaluate(tmp_path / "data", [estimates_method(est_dir)], tmp_path / "out", options)
    [saved] = list((tmp_path / "out").rglob("song0.json"))
    text = saved.read_text()
    saved.write_text(text[: len(text) // 2])  # a run killed mid-write by an older version, or a disk hiccup
    [again] = evaluate(tmp_path / "data", [estimates_method(est_dir)], tmp_path / "out", options)
    assert again["stems"] == first["stems"]
    assert json.loads(saved.read_text())["stems"] == first["stems"]
    assert any("re-scoring" in r.getMessage() for r in caplog.records)

"""The one stem vocabulary: ``stemforge.stems`` spells the stem names; nothing else in src/ or benchmarks/ does."""

from __future__ import annotations

import ast
from pathlib import Path

from stemforge.stems import FOUR_STEMS, SIX_STEMS

ROOT = Path(__file__).resolve().parents[1]


def spelled_out_vocabularies(source: str) -> list[int]:
    """Lines of tuple/list literals of strings that contain the four stem names in order (a spelled-out copy)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Tuple, ast.List)):
            names = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if any(tuple(names[i:i + 4]) == FOUR_STEMS for i in range(len(names))):
                lines.append(node.lineno)
    return lines


def test_the_detector_finds_a_copy():
    assert spelled_out_vocabularies('X = ["mixture", "drums", "bass", "other", "vocals"]') == [1]
    assert spelled_out_vocabularies('X = ("drums", "vocals")') == []


def test_no_module_spells_out_the_stems_but_stems_py():
    files = sorted((ROOT / "src" / "stemforge").rglob("*.py")) + sorted((ROOT / "benchmarks").rglob("*.py"))
    copies = [f"{f.relative_to(ROOT)}:{line}" for f in files if f.name != "stems.py" or f.parent.name != "stemforge"
              for line in spelled_out_vocabularies(f.read_text())]
    assert copies == [], f"use stemforge.stems.FOUR_STEMS/SIX_STEMS instead of spelling the names out: {copies}"


def test_vocabulary_values_and_users():
    from stemforge.data import synth
    from stemforge.data.stemmp4 import STEM_MP4_STREAMS
    from stemforge.evaluate import EvaluateOptions
    from stemforge.models.base import ModelConfig
    from stemforge.train.loop import DEFAULT_STEMS

    assert FOUR_STEMS == ("drums", "bass", "other", "vocals")
    assert SIX_STEMS == FOUR_STEMS + ("guitar", "piano")
    assert synth.FOUR_STEMS is FOUR_STEMS and synth.SIX_STEMS is SIX_STEMS  # re-exported, not copied
    assert ModelConfig().sources is FOUR_STEMS
    assert EvaluateOptions().sources is FOUR_STEMS
    assert DEFAULT_STEMS == list(FOUR_STEMS)
    assert STEM_MP4_STREAMS == ("mixture", *FOUR_STEMS)

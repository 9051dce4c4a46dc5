"""Separation quality metrics: museval-exact BSS Eval v4, MDX SDR, SI-SDR, SNR, and oracle separators."""

from stemforge.metrics.bss_eval import BSSEvalScores, bss_eval_v4, nanmedian
from stemforge.metrics.checks import MetricsError, check_pair, check_rate
from stemforge.metrics.oracle import ideal_binary_mask, ideal_ratio_mask, oracle_wiener
from stemforge.metrics.simple import framewise_snr, mdx_sdr, si_sdr

__all__ = [
    "BSSEvalScores", "MetricsError", "bss_eval_v4", "check_pair", "check_rate", "framewise_snr",
    "ideal_binary_mask", "ideal_ratio_mask", "mdx_sdr", "nanmedian", "oracle_wiener", "si_sdr",
]

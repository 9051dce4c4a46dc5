"""Write a copy of a ``unet`` checkpoint with other inference settings: its re-mask STFT (issue #12), its overlap (#18).

    PYTHONPATH=src python recipes/set_remask.py IN.safetensors OUT.safetensors --fft 24576 --hop 8192
    PYTHONPATH=src python recipes/set_remask.py IN.safetensors OUT.safetensors --overlap 0.15

Same weights (same ``weights_sha256``) and the same recorded training metadata; only the config's ``remask_fft``
and ``remask_hop`` (the re-mask in a longer STFT; 0 and 0 turn it off) and ``overlap`` (the engine's overlap
between segments when the user does not choose one) change, each only when given (``models.unet.UNetConfig``).
How the bundled default got its re-mask and its overlap: MODEL_CARD.md.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from stemforge.checkpoint import load_checkpoint, save_checkpoint
from stemforge.errors import StemforgeError
from stemforge.models.unet import UNetSeparator

# Written by save_checkpoint itself from the model; everything else in the header is carried over.
OWN_KEYS = {"format", "architecture", "config", "sources", "sample_rate", "channels", "num_parameters",
            "weights_sha256"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source")
    parser.add_argument("out")
    parser.add_argument("--fft", type=int, help="re-mask STFT size (0: off; default: keep)")
    parser.add_argument("--hop", type=int, help="re-mask STFT hop (0: off; default: keep)")
    parser.add_argument("--overlap", type=float, help="overlap between segments, in [0, 1) (default: keep)")
    parser.add_argument("-f", "--force", action="store_true", help="overwrite OUT if it exists")
    args = parser.parse_args()
    if (args.fft is None) != (args.hop is None):
        parser.error("--fft and --hop go together")
    if args.fft is None and args.overlap is None:
        parser.error("nothing to set: give --fft and --hop, or --overlap")
    if Path(args.out).exists() and not args.force:
        parser.error(f"{args.out} exists (pass --force to overwrite it)")
    try:
        model, meta = load_checkpoint(args.source)
    except StemforgeError as exc:
        parser.error(str(exc))
    if model.architecture != "unet":  # the causal U-Net refuses one: it would look a whole window ahead
        parser.error(f"{args.source} is a {model.architecture} checkpoint; this recipe sets unet checkpoints only")
    fft, hop = (model.config.remask_fft, model.config.remask_hop) if args.fft is None else (args.fft, args.hop)
    overlap = model.config.overlap if args.overlap is None else args.overlap
    if model.config.refine_bins and (fft, hop) != (model.config.remask_fft, model.config.remask_hop):
        parser.error(f"{args.source}'s refiner was trained in its {model.config.remask_fft}/{model.config.remask_hop} "
                     "re-mask STFT; train one for the new STFT with recipes/train_refiner.py")
    try:
        config = dataclasses.replace(model.config, remask_fft=fft, remask_hop=hop, overlap=overlap)
    except ValueError as exc:
        parser.error(str(exc))
    copy = UNetSeparator(config)
    copy.load_state_dict(model.state_dict())
    saved = save_checkpoint(copy, args.out, **{k: v for k, v in meta.items() if k not in OWN_KEYS})
    assert saved["weights_sha256"] == meta["weights_sha256"]
    print(f"{args.out}: remask_fft={fft} remask_hop={hop} overlap={overlap}, weights {saved['weights_sha256'][:12]}")


if __name__ == "__main__":
    main()

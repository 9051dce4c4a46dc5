"""Write a copy of a ``unet`` checkpoint whose config re-masks its stems in a longer STFT (issue #12).

    PYTHONPATH=src python recipes/set_remask.py IN.safetensors OUT.safetensors --fft 24576 --hop 8192

Same weights (same ``weights_sha256``) and the same recorded training metadata; only the config's ``remask_fft``
and ``remask_hop`` change (``models.unet.UNetConfig``; 0 and 0 turn it off). How the bundled default got its
re-mask: MODEL_CARD.md.
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
    parser.add_argument("--fft", type=int, required=True, help="re-mask STFT size (0: off)")
    parser.add_argument("--hop", type=int, required=True, help="re-mask STFT hop (0: off)")
    parser.add_argument("-f", "--force", action="store_true", help="overwrite OUT if it exists")
    args = parser.parse_args()
    if Path(args.out).exists() and not args.force:
        parser.error(f"{args.out} exists (pass --force to overwrite it)")
    try:
        model, meta = load_checkpoint(args.source)
    except StemforgeError as exc:
        parser.error(str(exc))
    if model.architecture != "unet":  # the causal U-Net refuses one: it would look a whole window ahead
        parser.error(f"{args.source} is a {model.architecture} checkpoint; the re-mask is a unet config setting")
    if model.config.refine_bins and (args.fft, args.hop) != (model.config.remask_fft, model.config.remask_hop):
        parser.error(f"{args.source}'s refiner was trained in its {model.config.remask_fft}/{model.config.remask_hop} "
                     "re-mask STFT; train one for the new STFT with recipes/train_refiner.py")
    try:
        config = dataclasses.replace(model.config, remask_fft=args.fft, remask_hop=args.hop)
    except ValueError as exc:
        parser.error(str(exc))
    copy = UNetSeparator(config)
    copy.load_state_dict(model.state_dict())
    saved = save_checkpoint(copy, args.out, **{k: v for k, v in meta.items() if k not in OWN_KEYS})
    assert saved["weights_sha256"] == meta["weights_sha256"]
    print(f"{args.out}: remask_fft={args.fft} remask_hop={args.hop}, weights {saved['weights_sha256'][:12]}")


if __name__ == "__main__":
    main()

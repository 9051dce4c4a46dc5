"""Issue #12: a default grown by one U-Net level, the warm start of recipes/long_default4.toml (depth 5 -> 6):

    git show bb7c3f9:src/stemforge/assets/default.safetensors > runs/default_bb7c3f9.safetensors
    PYTHONPATH=src python recipes/grow_default.py runs/default_bb7c3f9.safetensors runs/default_deep6.safetensors

The grown model separates as the shipped one does (train.grow.deepen; exactly, up to the frame padding at segment
ends) and has four times the parameters at about the same separation time.
"""

import sys

from stemforge.checkpoint import load_checkpoint, save_checkpoint
from stemforge.train.grow import deepen

source, target = sys.argv[1:3]
model, meta = load_checkpoint(source)
grown = deepen(model).eval()
save_checkpoint(grown, target, training={"grown_from": meta.get("weights_sha256"), "grown_by": "train.grow.deepen"})
print(f"{source}: depth {model.config.depth}, {sum(p.numel() for p in model.parameters())} parameters -> "
      f"{target}: depth {grown.config.depth}, {sum(p.numel() for p in grown.parameters())} parameters")

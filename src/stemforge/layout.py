"""Channel layouts: how a file's channels become model inputs, and how stems get the file's layout back.

A plan maps a block ``(file_channels, n)`` to ``(groups, model_channels, n)``, the groups being separated
independently, and maps the engine's ``(groups, sources, model_channels, n)`` back to
``(sources, out_channels, n)``. By default every file becomes one group (mono is duplicated, more than
the model's channels are downmixed) and stems come out in the model's layout. With ``keep_channels`` the
file's channels are split into groups of the model's width (a 5.1 file is separated as three stereo
pairs), and each stem has the file's channel count.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from stemforge.audio import downmix_matrix


@dataclasses.dataclass(frozen=True)
class ChannelPlan:
    file_channels: int
    model_channels: int
    keep_channels: bool = False

    @property
    def groups(self) -> list[list[int]]:
        """The file channel indices feeding each group."""
        if not self.keep_channels:
            return [list(range(self.file_channels))]
        width = self.model_channels
        return [list(range(i, min(i + width, self.file_channels))) for i in range(0, self.file_channels, width)]

    @property
    def out_channels(self) -> int:
        return self.file_channels if self.keep_channels else self.model_channels

    def to_model(self, block: np.ndarray) -> np.ndarray:
        """(file_channels, n) -> (groups, model_channels, n)."""
        return np.stack([downmix_matrix(len(g), self.model_channels) @ block[g] for g in self.groups]).astype(np.float32, copy=False)

    def to_file(self, stems: np.ndarray) -> np.ndarray:
        """(groups, sources, model_channels, n) -> (sources, out_channels, n)."""
        if not self.keep_channels:
            return stems[0]
        parts = [np.einsum("oc,scn->son", downmix_matrix(self.model_channels, len(g)), stems[i]) for i, g in enumerate(self.groups)]
        return np.concatenate(parts, axis=1).astype(np.float32, copy=False)

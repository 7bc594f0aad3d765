"""The e2cnn group and field types, built in one place.

The encoder acts on the plane with the cyclic rotation group C_N
(``gspaces.Rot2dOnR2(N)``).  Inputs are trivial fields (one per image channel);
hidden layers are regular fields (N channels each, one per rotation).  Only
cyclic groups are used: flip groups, SO(2) and O(2) break in e2cnn 0.2.3 on numpy 2.
"""

from __future__ import annotations

import warnings

from e2cnn import gspaces
from e2cnn import nn as enn

__all__ = ["Fields", "build_fields"]


class Fields:
    """Field types of the encoder: ``input`` and one regular type per block."""

    def __init__(self, group_order: int, channels: int, widths: tuple[int, ...]):
        self.gspace = gspaces.Rot2dOnR2(N=group_order)
        self.input = enn.FieldType(self.gspace, channels * [self.gspace.trivial_repr])
        self.blocks = [enn.FieldType(self.gspace, w * [self.gspace.regular_repr]) for w in widths]
        self.group_order = group_order


def build_fields(group_order: int, channels: int, widths: tuple[int, ...]) -> Fields:
    with warnings.catch_warnings():
        # e2cnn 0.2.3 builds bases with uint8 masks; torch warns once per layer.
        warnings.filterwarnings("ignore", message=".*uint8.*")
        return Fields(group_order, channels, widths)

"""galaxy-codae: centroid- and orientation-aware disentangling autoencoder for survey cutouts.

The science follows Cha et al., "Discovering fully semantic representations via
centroid- and orientation-aware feature learning", Nature Machine Intelligence 7,
307-314 (2025).  Pixel and angle conventions are stated once, in
:mod:`pipeline.conventions`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("galaxy-codae")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

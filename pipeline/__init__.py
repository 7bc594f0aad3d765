"""galaxy-codae: centroid- and orientation-aware disentangling autoencoder for survey cutouts.

The science follows Cha et al., "Discovering fully semantic representations via
centroid- and orientation-aware feature learning", Nature Machine Intelligence 7,
307-314 (2025).  Pixel and angle conventions are stated once, in
:mod:`pipeline.conventions`.
"""

from catalogs import __version__  # one version source for both packages

__all__ = ["__version__"]

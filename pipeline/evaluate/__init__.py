"""Evaluation of learned representations: supervised disentanglement metrics and latent labelling.

See :mod:`pipeline.evaluate.metrics` for the definitions, binning and classifier settings.
"""

from pipeline.evaluate.metrics import (
    EIGHT_METRICS,
    DCIScores,
    PoseRemoval,
    compute_all,
    dci,
    dcimig,
    jemmig,
    mig,
    modularity,
    pearson_table,
    remove_pose_latents,
    sap,
    z_diff,
    z_max_var,
    z_min_var,
)

__all__ = [
    "EIGHT_METRICS",
    "DCIScores",
    "PoseRemoval",
    "compute_all",
    "dci",
    "dcimig",
    "jemmig",
    "mig",
    "modularity",
    "pearson_table",
    "remove_pose_latents",
    "sap",
    "z_diff",
    "z_max_var",
    "z_min_var",
]

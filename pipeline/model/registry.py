"""Which class a ``ModelConfig.kind`` builds: CODAE here, baselines from :mod:`pipeline.baselines`."""

from __future__ import annotations

import importlib

import torch.nn as nn

from pipeline.config import ModelConfig
from pipeline.errors import ConfigError

__all__ = ["MODEL_KINDS", "build_model"]

#: kind -> "module:Class"; every class takes a ModelConfig and returns ModelOutput from forward.
MODEL_KINDS: dict[str, str] = {
    "codae": "pipeline.model.codae:CODAE",
    "ae": "pipeline.baselines.ae:AE",
    "beta-vae": "pipeline.baselines.beta_vae:BetaVAE",
    "dae": "pipeline.baselines.dae:DAE",
    "spatial-vae": "pipeline.baselines.spatial_vae:SpatialVAE",
    "target-vae": "pipeline.baselines.target_vae:TargetVAE",
    "irl-inr": "pipeline.baselines.irl_inr:IRLINR",
}


def build_model(config: ModelConfig) -> nn.Module:
    """Instantiate the model ``config.kind`` names."""
    try:
        target = MODEL_KINDS[config.kind]
    except KeyError:
        raise ConfigError(f"unknown model.kind {config.kind!r} (one of {', '.join(MODEL_KINDS)})") from None
    module, cls = target.split(":")
    try:
        return getattr(importlib.import_module(module), cls)(config)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"model.kind {config.kind!r} is not available ({e})") from None

"""CODAE model.  Every e2cnn import of the package lives inside this sub-package.

Checkpoint mode: e2cnn's ``R2Conv`` caches its expanded filters as buffers in eval
mode, so the state dict differs between modes (and a train-mode state dict does not
load strictly into an eval-mode model).  We always save and load state dicts in
**train mode**: use :func:`pipeline.model.codae.model_state_dict` and
:func:`pipeline.model.codae.load_model_state`.
"""

from pipeline.model.codae import CODAE, load_model_state, model_state_dict
from pipeline.model.output import ModelOutput
from pipeline.model.registry import MODEL_KINDS, build_model

__all__ = ["CODAE", "ModelOutput", "model_state_dict", "load_model_state", "build_model", "MODEL_KINDS"]

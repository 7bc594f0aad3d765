"""One typed configuration for a run: model, loss and training.

Saved as ``config.yaml`` beside every run and inside every checkpoint.  Loading is
strict: an unknown key, a wrong type or a bad value is a :class:`ConfigError` naming it.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from catalogs import atomic
from pipeline.errors import ConfigError

__all__ = ["ModelConfig", "LossConfig", "TrainConfig", "RunConfig", "load_config", "save_config"]


@dataclass(frozen=True)
class ModelConfig:
    """CODAE architecture (Cha et al. 2025, Methods)."""

    kind: str = "codae"  # codae, or a baseline of pipeline.baselines (beta-vae, dae, spatial-vae, target-vae, irl-inr)
    image_size: int = 64  # pixels per side of the store's images; a multiple of 2**len(widths)
    channels: int = 3  # image channels (3 for RGB survey cutouts, 1 for grey)
    group_order: int = 8  # N of the cyclic rotation group C_N
    widths: tuple[int, ...] = (4, 8, 16, 16)  # regular fields per equivariant block
    kernels: tuple[int, ...] = (5, 5, 3, 3)  # odd kernel sizes, one per block
    # equivariant: pose from the regular fields' group axis (turns exactly with the input under quarter
    # turns, 0-360 direction included; orientation prior of order 2 only); dense: fully connected
    # layers on the flattened maps (not equivariant; reads any shape harmonic, for the shape sets)
    pose_readout: Literal["equivariant", "dense"] = "equivariant"
    latent_dim: int = 16  # size of the pose-invariant latent z (benchmarks/latents.py: 16 beat 8 against equal-size pixel PCA)
    # B_inv also sees the image in its own frame (recentred and derotated by the pose) through a plain
    # CNN of this first width (0: group-pooled features only, as in the paper)
    aligned_encoder_width: int = 16
    hidden: int = 128  # width of the fully connected layers in both branches
    decoder_width: int = 16  # channels of the decoder's last up-sampling block (doubling per block upwards)
    learn_centroid: bool = True  # False for centred data (diffraction): x = y = 0
    centroid_window: bool = True  # the learned centroid weighs light inside a Gaussian window iterated onto the target (XWIN)
    kl_weight: float = 4.0  # beta of beta-VAE and the KL weight of the other VAE baselines (unused by CODAE)

    def __post_init__(self) -> None:
        if len(self.widths) != len(self.kernels):
            raise ConfigError(f"model.widths ({len(self.widths)}) and model.kernels ({len(self.kernels)}) differ in length")
        if any(k % 2 == 0 for k in self.kernels):
            raise ConfigError(f"model.kernels must be odd, got {list(self.kernels)}")
        step = 2 ** (len(self.widths) - 1)
        if self.image_size % step or self.image_size < 2 * step:
            raise ConfigError(f"model.image_size {self.image_size} must be a multiple of {step} and >= {2 * step}")
        if self.pose_readout not in ("equivariant", "dense"):
            raise ConfigError(f"model.pose_readout must be 'equivariant' or 'dense', got {self.pose_readout!r}")
        if self.pose_readout == "equivariant" and self.group_order % 4:
            raise ConfigError(f"model.pose_readout 'equivariant' needs a group order divisible by 4, got {self.group_order}")
        if self.group_order < 1 or self.latent_dim < 1:
            raise ConfigError("model.group_order and model.latent_dim must be positive")


@dataclass(frozen=True)
class LossConfig:
    """Reconstruction + beta(t) x image-moment loss."""

    reconstruction: Literal["mse", "bce"] = "mse"  # bce for binary images (dSprites)
    orientation_prior: Literal["moments", "com"] = "moments"  # com: centre of mass, for centred patterns
    # moments prior only: shape-harmonic orders it may anchor to, per image the strongest.  (2,) is the
    # paper's second-moment axis (galaxies); (2, 3, 4) also anchors triangles (mod 120) and squares (mod 90)
    orientation_orders: tuple[int, ...] = (2,)
    beta_start: float = 1.0  # weight of the moment loss at step 0
    beta_end: float = 0.05  # floor after the decay; orientation stalls when beta reaches 0
    beta_decay_fraction: float = 0.6  # fraction of the planned steps over which beta decays (cosine)
    centroid_weight: float = 10.0  # centroid term (normalised units squared: 1 px at 64 px is 1e-3)
    orientation_weight: float = 1.0  # weight of the doubled-angle orientation term
    direction_weight: float = 0.1  # logistic term teaching the direction read-out the half turn the reconstruction prefers
    aligned_weight: float = 1.0  # constant weight of the aligned-image term (its moments: centred, along +x)
    background_ring: int = 4  # border width (pixels) used to estimate the sky level
    background_sigma: float = 1.0  # sky level = ring mean + this many ring standard deviations

    def __post_init__(self) -> None:
        if self.reconstruction not in ("mse", "bce"):
            raise ConfigError(f"loss.reconstruction must be 'mse' or 'bce', got {self.reconstruction!r}")
        if self.orientation_prior not in ("moments", "com"):
            raise ConfigError(f"loss.orientation_prior must be 'moments' or 'com', got {self.orientation_prior!r}")
        if not self.orientation_orders or any(not 2 <= k <= 8 for k in self.orientation_orders):
            raise ConfigError(f"loss.orientation_orders must be orders from 2 to 8, got {list(self.orientation_orders)}")
        if not 0.0 <= self.beta_decay_fraction <= 1.0:
            raise ConfigError(f"loss.beta_decay_fraction must be in [0, 1], got {self.beta_decay_fraction}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping."""

    seed: int = 0  # seeds torch, numpy and the sampler; CPU runs are reproducible
    batch_size: int = 32  # images per optimiser step (per process)
    lr: float = 1e-3  # Adam learning rate at the start; cosine decay to lr_final_fraction x lr over training
    lr_final_fraction: float = 0.05  # the learning rate at the end of training, as a fraction of lr
    # larger batches (pipeline/schedules.py): peak lr = lr x (batch_size x processes / lr_reference_batch)**p,
    # p = 1 (linear) or 1/2 (sqrt, the rule for Adam); none keeps lr whatever the batch
    lr_scaling: Literal["none", "linear", "sqrt"] = "none"
    lr_reference_batch: int = 32  # the effective batch size at which lr was tuned
    warmup_steps: int = 0  # optimiser steps of linear warm-up to the peak lr (a few hundred with a scaled lr)
    weight_decay: float = 0.0  # Adam weight decay
    max_epochs: int = 20  # passes over the store; the beta schedule is planned on these
    max_steps: int | None = None  # optional hard cap on optimiser steps (overrides epochs when smaller)
    max_minutes: float | None = None  # wall-clock budget; stops cleanly with a checkpoint
    checkpoint_every: int = 200  # steps between atomic checkpoints
    log_every: int = 20  # steps between metrics.csv rows and progress lines
    num_workers: int = 0  # DataLoader worker processes (0 = main process)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto picks CUDA when present
    # hold the whole image array as one tensor on the device and draw batches from it by index (no
    # DataLoader; same batches): auto = on a GPU when it fits in half its free memory, off on CPU
    data_on_device: bool | Literal["auto"] = "auto"
    compile: bool = False  # torch.compile the trunk and decoder; falls back to eager (one log line) if it fails
    cpu_threads: int | None = None  # torch CPU threads of a one-process CPU run (None: every CPU granted)
    grad_clip: float = 5.0  # max gradient norm

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.lr <= 0 or self.max_epochs < 1:
            raise ConfigError("train.batch_size, train.lr and train.max_epochs must be positive")
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise ConfigError(f"train.cpu_threads must be at least 1 or null, got {self.cpu_threads}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"train.device must be auto, cpu or cuda, got {self.device!r}")
        if self.lr_reference_batch < 1 or self.warmup_steps < 0:
            raise ConfigError("train.lr_reference_batch must be positive and train.warmup_steps not negative")


@dataclass(frozen=True)
class RunConfig:
    """Everything a training run needs; saved as ``config.yaml``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.model.kind == "codae" and self.model.pose_readout == "equivariant" and \
                (self.loss.orientation_prior, tuple(self.loss.orientation_orders)) != ("moments", (2,)):
            raise ConfigError("model.pose_readout 'equivariant' reads the order-2 moment axis; "
                              "set model.pose_readout: dense for loss.orientation_orders beyond [2] or the com prior")

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "RunConfig":
        return _build(cls, data or {}, "")

    def replace(self, **sections: dict[str, Any]) -> "RunConfig":
        """Return a copy with some fields of some sections changed, e.g. ``train={'max_epochs': 3}``."""
        d = self.to_dict()
        for name, changes in sections.items():
            if name not in d:
                raise ConfigError(f"unknown config section {name!r}")
            d[name].update(changes)
        return RunConfig.from_dict(d)


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


#: a number in exponent form without a dot (``1e-3``), which YAML 1.1 and so PyYAML read as a string.
_EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _check_type(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: must be one of {list(args)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_type(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(_check_type(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if hint is float:
        if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value.strip()):
            return float(value)  # PyYAML (YAML 1.1) reads 1e-3, without a dot, as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    return value


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config key {(prefix + '.' if prefix else '') + unknown[0]!s}")
    kwargs = {k: _check_type(v, hints[k], f"{prefix + '.' if prefix else ''}{k}") for k, v in data.items()}
    return cls(**kwargs)


def load_config(path: str | Path) -> RunConfig:
    """Read a YAML config; missing keys take their defaults, unknown keys are an error."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    try:
        return RunConfig.from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write ``config`` as YAML (atomically: temporary file, then rename)."""
    atomic.write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))

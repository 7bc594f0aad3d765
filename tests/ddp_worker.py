"""Run by ``torchrun`` from tests/test_ddp.py: train a tiny CODAE with gloo, save this rank's weights.

Not a test module (no ``test_`` prefix).  Usage: torchrun --nproc-per-node 2 tests/ddp_worker.py OUT
"""

import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import ModelConfig, RunConfig  # noqa: E402
from pipeline.data.memory import ArrayDataset  # noqa: E402
from pipeline.model import model_state_dict  # noqa: E402
from pipeline.train import distributed_from_environment, train  # noqa: E402
from tests.conftest import gaussian_ellipses  # noqa: E402

SMALL = ModelConfig(image_size=32, widths=(2, 4, 4), kernels=(5, 3, 3), latent_dim=4, hidden=32, decoder_width=8)

if __name__ == "__main__":
    out = Path(sys.argv[1])
    torch.set_num_threads(1)
    cfg = RunConfig(model=SMALL).replace(train={"batch_size": 8, "max_epochs": 2, "log_every": 2, "device": "cpu"})
    imgs, _ = gaussian_ellipses(64, size=32, seed=4, max_shift=3)
    with distributed_from_environment("cpu"):
        result = train(cfg, ArrayDataset(imgs), out / "run", progress=False)
        torch.save(model_state_dict(result.model), out / f"rank{dist.get_rank()}.pt")
        (out / f"rank{dist.get_rank()}.steps").write_text(f"{result.steps} {result.world_size}")

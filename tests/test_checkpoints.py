"""Checkpoints a user may hand to infer or train: damaged, mismatched, hostile, or resumed under other settings."""

from __future__ import annotations

import os
import pickle
import shutil
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from pipeline.checkpoint import check_resume, load_checkpoint, save_checkpoint, tensors_digest
from pipeline.cli import main
from pipeline.errors import BadInputError, ConfigError


def _member_offset(path: Path, member: str) -> tuple[int, int]:
    """(offset of the first data byte, size) of a stored zip member."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        head = f.read(30)
    name_len, extra_len = struct.unpack("<HH", head[26:30])
    return info.header_offset + 30 + name_len + extra_len, info.file_size


def _largest_weight_member(path: Path) -> str:
    with zipfile.ZipFile(path) as z:
        data = [i for i in z.infolist() if "/data/" in i.filename]
    return max(data, key=lambda i: i.file_size).filename


def _infer(demo_run, ckpt: Path, out: Path) -> int:
    return main(["infer", "--store", str(demo_run["store"]), "--checkpoint", str(ckpt), "--out", str(out),
                 "--device", "cpu", "--quiet"])


def test_a_checkpoint_with_damaged_tensor_bytes_is_refused_with_one_line(demo_run, tmp_path, capsys):
    ckpt = tmp_path / "checkpoint.pt"
    shutil.copy(demo_run["checkpoint"], ckpt)
    offset, size = _member_offset(ckpt, _largest_weight_member(ckpt))
    assert size >= 128
    with open(ckpt, "r+b") as f:
        f.seek(offset + size // 2)
        f.write(bytes(64))
    torch.load(ckpt, weights_only=True)  # PyTorch itself reads the damaged file without complaint
    out = tmp_path / "cat.fits"
    assert _infer(demo_run, ckpt, out) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"galaxy-codae infer: error: {ckpt.resolve()}: damaged checkpoint: its tensors differ from the "
                   "digest recorded when it was saved"]
    assert not out.exists() and not Path(f"{out}.partial").exists()


def test_wrong_tensor_shapes_and_hostile_pickles_exit_2_with_one_line_and_leave_nothing(demo_run, tmp_path, capsys):
    state = load_checkpoint(demo_run["checkpoint"])
    state["config"] = state["config"].to_dict()
    state.pop("tensors_sha256")
    name = next(k for k, v in state["model"].items() if v.ndim == 2)
    state["model"][name] = torch.zeros(3, 5)
    wrong = tmp_path / "wrong.pt"
    save_checkpoint(state, wrong)  # a valid digest of the wrong shapes
    out = tmp_path / "cat.fits"
    assert _infer(demo_run, wrong, out) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"galaxy-codae infer: error: {wrong.resolve()}: checkpoint does not "
                                               "match the model configuration"), err
    assert not out.exists() and not Path(f"{out}.partial").exists()

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned > " + str(tmp_path / "owned"),))

    refused = "refused: not a galaxy-codae checkpoint, it asks to unpickle code or objects ("
    for k, (write, says) in enumerate([
        (lambda f: torch.save({"format": 2, "model": Evil()}, f), (refused,)),
        (lambda f: pickle.dump(Evil(), f, protocol=2), (refused,)),
        # protocol 4 frames its opcodes, which PyTorch's safe unpickler stops at before any global
        (lambda f: pickle.dump(Evil(), f, protocol=4), (refused, "not a readable galaxy-codae checkpoint (")),
    ]):
        hostile = tmp_path / f"hostile{k}.pt"
        with open(hostile, "wb") as f:
            write(f)
        assert _infer(demo_run, hostile, out) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1, err
        assert any(err[0].startswith(f"galaxy-codae infer: error: {hostile.resolve()}: {s}") for s in says), err
        assert "PyTorch 2.6" not in err[0] and "weights_only" not in err[0]
        assert not (tmp_path / "owned").exists() and not Path(f"{out}.partial").exists()


def test_the_digest_covers_every_tensor_and_a_format_1_checkpoint_is_refused(demo_run, tmp_path):
    state = torch.load(demo_run["checkpoint"], weights_only=True)
    digest = state["tensors_sha256"]
    assert digest == tensors_digest(state)
    state["optimizer"]["state"][0]["exp_avg"].view(-1)[0] += 1.0  # an optimiser moment, not a weight
    assert tensors_digest(state) != digest
    state = torch.load(demo_run["checkpoint"], weights_only=True)
    state["format"] = 1
    del state["tensors_sha256"]
    torch.save(state, tmp_path / "old.pt")
    with pytest.raises(BadInputError, match=r"checkpoint format 1, this galaxy-codae reads format 2"):
        load_checkpoint(tmp_path / "old.pt")


@pytest.mark.parametrize("option, value, key", [("--batch-size", "8", "batch_size"), ("--seed", "5", "seed")])
def test_resume_refuses_a_setting_the_saved_state_depends_on(demo_run, tmp_path, capsys, option, value, key):
    run = tmp_path / "run"
    shutil.copytree(demo_run["checkpoint"].parent, run)
    before = (run / "checkpoint.pt").read_bytes()
    rc = main(["train", "--store", str(demo_run["store"]), "--out", str(run), "--resume", option, value,
               "--max-epochs", "4", "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err.splitlines()
    old = getattr(demo_run["config"].train, key)
    assert err == [f"galaxy-codae train: error: {run / 'checkpoint.pt'}: cannot resume: train.{key} is {int(value)}, "
                   f"the checkpoint was trained with {old}; a resumed run may change only its budgets and where "
                   "it runs"]
    assert (run / "checkpoint.pt").read_bytes() == before


def test_check_resume_covers_the_process_count_and_the_data(demo_run):
    state = load_checkpoint(demo_run["checkpoint"])
    cfg = state["config"]
    data = dict(state["store"])
    check_resume(state, cfg.replace(train={"max_epochs": 99, "max_minutes": 1.0}), world_size=1, data=data)
    with pytest.raises(ConfigError, match=r"^2 process\(es\), the checkpoint was trained with 1"):
        check_resume(state, cfg, world_size=2, data=data)
    with pytest.raises(ConfigError, match=r"training data differ .*\(n_objects 95, trained on 96\)"):
        check_resume(state, cfg, world_size=1, data={**data, "n_objects": 95})
    with pytest.raises(ConfigError, match=r"^train.weight_decay is 0.1"):
        check_resume(state, cfg.replace(train={"weight_decay": 0.1}), world_size=1, data=data)

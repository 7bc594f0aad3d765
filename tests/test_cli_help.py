"""The command line in a new user's hands: examples, defaults, one vocabulary, messages that say what to do."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from pipeline.cli import COMMANDS, build_parser, main
from pipeline.config import RunConfig

CORE = ["demo-survey", "ingest", "train", "infer", "query", "stack", "run", "evaluate", "config"]


def _help(*argv: str) -> str:
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    return ""


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_help_has_an_example(command, capsys):
    _help(command)
    text = capsys.readouterr().out
    assert re.search(r"^examples?:$", text, re.M), text
    assert re.search(rf"^  galaxy-codae {command} ", text, re.M) or command == "config" and "config --show" in text


def test_top_level_help_is_plain_text(capsys):
    _help()
    text = capsys.readouterr().out
    assert "``" not in text and ":mod:" not in text and "COMMAND --help" in text
    assert set(CORE) <= set(COMMANDS)


def test_train_help_shows_the_config_defaults(capsys):
    _help("train")
    text = " ".join(capsys.readouterr().out.split())
    d = RunConfig().train
    assert f"(config train.max_epochs; default: {d.max_epochs})" in text
    assert f"(config train.batch_size; default: {d.batch_size})" in text
    assert "--loader-workers WORKERS, --workers WORKERS" in text


def test_defaults_are_shown_for_plain_options(capsys):
    _help("stack")
    text = " ".join(capsys.readouterr().out.split())
    assert "number of quantile bins for --bin-by (default: 5)" in text and "(default: mean)" in text


@pytest.mark.parametrize(
    ("argv", "dest", "value"),
    [
        (["ingest", "--catalog", "c", "--images", "i", "--out", "o", "--size", "32"], "size", 32),
        (["ingest", "--catalog", "c", "--images", "i", "--out", "o", "--image-size", "32"], "size", 32),
        (["run", "--demo", "--demo-n", "50"], "demo_n", 50),
        (["run", "--demo", "--n", "50"], "demo_n", 50),
        (["run", "--demo", "--demo-size", "128"], "demo_size", 128),
        (["run", "--demo", "--cutout-size", "128"], "demo_size", 128),
        (["train", "--store", "s", "--out", "o", "--workers", "3"], "workers", 3),
        (["train", "--store", "s", "--out", "o", "--loader-workers", "3"], "workers", 3),
        (["demo-survey", "out", "--n", "5", "--cutout-size", "64"], "cutout_size", 64),
        (["query", "--catalog", "cat.fits", "--count"], "catalog_option", "cat.fits"),
        (["stack", "cat.fits", "--store", "s", "--out", "o.fits"], "catalog", "cat.fits"),
    ],
)
def test_one_vocabulary_with_the_old_names_as_aliases(argv, dest, value):
    args = build_parser().parse_args(argv)
    assert getattr(args, dest) == value


def test_the_default_demo_is_small_and_trains_on_a_budget_of_minutes():
    from flows.galaxy_codae import resolve_config
    from pipeline.cli.run import run_config, shard_size, training_budget

    demo = build_parser().parse_args(["run", "--demo"])
    train = resolve_config(run_config(demo), *training_budget(demo)).train
    assert train.max_minutes is not None and 0 < train.max_minutes <= 3  # the demo ends in minutes on 2 cores
    assert train.cpu_threads == 1  # robust on a shared 2-core machine
    assert train.max_steps is not None and train.max_steps <= 1000
    assert train.max_epochs * 300 // train.batch_size >= train.max_steps  # the epochs do not end it first
    assert resolve_config(run_config(demo), *training_budget(demo)).model.image_size == 32  # 4x cheaper than 64
    assert demo.demo_n <= 1000
    assert shard_size(demo) < demo.demo_n <= shard_size(demo) * demo.workers  # a shard for every worker
    assert shard_size(demo) % 8 == 0  # whole store chunks
    # the bigger demo: a budget given, or the config's epochs
    bigger = build_parser().parse_args(["run", "--demo", "--n", "2000", "--max-minutes", "10"])
    train = resolve_config(run_config(bigger), *training_budget(bigger)).train
    assert train.max_minutes == 10 and train.max_steps is None
    full = build_parser().parse_args(["run", "--demo", "--max-epochs", "20"])
    train = resolve_config(run_config(full), *training_budget(full)).train
    assert train.max_minutes is None and train.max_steps is None and train.max_epochs == 20
    # a survey run, or a demo with its own config, keeps the config's budget
    survey = build_parser().parse_args(["run", "--catalog", "c.parquet", "--images", "im"])
    assert training_budget(survey) == (None, None) and shard_size(survey) == 1024
    own = build_parser().parse_args(["run", "--demo", "--config", "my.yaml"])
    assert training_budget(own) == (None, None) and run_config(own) == "my.yaml"
    assert run_config(survey) is None


def test_config_show_defaults_is_a_commented_valid_config(capsys, tmp_path):
    assert main(["config", "--show-defaults"]) == 0
    text = capsys.readouterr().out
    assert RunConfig.from_dict(yaml.safe_load(text)) == RunConfig()
    assert re.search(r"^  batch_size: 32  # images per optimiser step", text, re.M)
    assert re.search(r"^  orientation_orders: \[2\]  # .*second-moment axis", text, re.M)  # a comment above a key
    path = tmp_path / "mine.yaml"
    path.write_text("train:\n  max_epochs: 3\n")
    assert main(["config", str(path)]) == 0
    assert RunConfig.from_dict(yaml.safe_load(capsys.readouterr().out)).train.max_epochs == 3
    path.write_text("train:\n  max_epoch: 3\n")
    assert main(["config", str(path)]) == 2
    assert "unknown config key train.max_epoch" in capsys.readouterr().err
    assert main(["config"]) == 2


def test_query_and_stack_take_the_catalogue_either_way_but_not_two(capsys):
    assert main(["query", "a.fits", "--catalog", "b.fits", "--count"]) == 2
    assert "two catalogues given" in capsys.readouterr().err
    assert main(["query", "--count"]) == 2
    assert "no catalogue given" in capsys.readouterr().err


# ---------------------------------------------------------------- messages


def test_a_checkpoint_folder_says_which_file_is_expected(demo_run, tmp_path, capsys):
    run_dir = demo_run["checkpoint"].parent
    rc = main(["infer", "--store", str(demo_run["store"]), "--checkpoint", str(run_dir), "--out",
               str(tmp_path / "c.fits"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert f"{run_dir} is a folder; give the checkpoint file in it: {run_dir / 'checkpoint.pt'}" in err[0]
    assert not (tmp_path / "c.fits").exists()


def test_infer_output_format_follows_the_extension(demo_run, tmp_path, capsys):
    rc = main(["infer", "--store", str(demo_run["store"]), "--checkpoint", str(demo_run["checkpoint"]), "--out",
               str(tmp_path / "c.csv"), "--quiet"])
    assert rc == 2 and "written as FITS (.fits) or Parquet (.parquet), not csv" in capsys.readouterr().err


def test_a_store_of_another_size_says_how_to_fix_it(demo_run, tmp_path, capsys):
    rc = main(["train", "--store", str(demo_run["store"]), "--out", str(tmp_path / "r"), "--max-steps", "1",
               "--quiet"])  # default config: 64-pixel model, 32-pixel store
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "model.image_size: 32" in err[0] and "--image-size 64" in err[0], err


def test_existing_outputs_name_the_option_not_a_python_argument(tmp_path, capsys):
    out = tmp_path / "survey"
    out.mkdir()
    assert main(["demo-survey", str(out), "--n", "2", "--cutout-size", "64", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "pass --overwrite" in err and "overwrite=True" not in err


def test_rejected_coordinates_read_as_numbers(tmp_path, capsys):
    (tmp_path / "img").mkdir()
    rows = []
    for i in range(4):
        Image.fromarray(np.full((32, 32, 3), 40 * i, dtype=np.uint8)).save(tmp_path / "img" / f"g{i}.png")
        rows.append({"iauname": f"G{i}", "ra": 10.0 + i, "dec": 5.0, "file_loc": f"g{i}.png"})
    rows[1]["ra"] = float("nan")
    rows[2]["dec"] = 95.0
    pd.DataFrame(rows).to_parquet(tmp_path / "cat.parquet")
    store = tmp_path / "s.zarr"
    main(["ingest", "--catalog", str(tmp_path / "cat.parquet"), "--images", str(tmp_path / "img"), "--out",
          str(store), "--image-size", "16", "--quiet", "--max-reject-fraction", "0.9"])
    capsys.readouterr()
    rejects = pd.read_csv(f"{store}.rejects.csv")
    details = dict(zip(rejects["id"], rejects["detail"]))
    assert details == {"G1": "ra=nan dec=5.0", "G2": "ra=12.0 dec=95.0"}


def test_a_log_shows_progress_lines_from_the_start(tmp_path, capsys):
    assert main(["demo-survey", str(tmp_path / "s"), "--n", "3", "--cutout-size", "64"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "demo-survey: started (3 galaxies)" and "\r" not in "".join(err)
    assert any(line.startswith("demo-survey: 3/3 galaxies (100%)") and "elapsed" in line for line in err)

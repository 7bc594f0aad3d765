"""The real deployment: a Prefect server on a free loopback port, the process pool, prefect.yaml, a worker.

Brought up with ``flows.local_server.up`` (``prefect server start --host 127.0.0.1 --port P`` in a
temporary PREFECT_HOME, ``prefect work-pool create``, ``prefect deploy``, ``prefect worker start``),
driven through the ``prefect deployment run galaxy-codae/galaxy-codae --param ...`` command line,
twice: the second run must serve every finished task from the cache.  Everything started is
stopped in a ``finally`` (process groups SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),  # httpx/anyio loop teardown
]

TINY = {
    "model": {"image_size": 32, "widths": [2, 4, 4], "kernels": [5, 3, 3], "latent_dim": 4, "hidden": 32,
              "decoder_width": 8},
    "train": {"max_epochs": 1, "batch_size": 16, "device": "cpu"},
}
RUN_TIMEOUT_S = 420


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _deployment_run(env: dict[str, str], out: str, *params: str) -> str:
    cmd = [sys.executable, "-m", "prefect", "deployment", "run", "galaxy-codae/galaxy-codae",
           "--param", f"out={out}", "--param", "demo=true", "--param", "demo_n=32", "--param", "demo_size=96",
           "--param", "workers=1", "--param", "shard_size=16", "--param", 'stacks=[{"name": "all"}]',
           "--param", f"config={json.dumps(TINY)}", *params]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"UUID:\s*([0-9a-f-]{36})", r.stdout)
    assert m, r.stdout
    return m.group(1)


def _wait(client, flow_run_id: str, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while True:
        run = client.read_flow_run(flow_run_id)
        if run.state is not None and run.state.is_final():
            return run
        assert time.monotonic() < deadline, f"flow run {flow_run_id} still {run.state_name} after {timeout_s} s"
        time.sleep(2.0)


def _task_states(client, flow_run_id: str) -> dict[str, str]:
    """Task run name -> state name, over the subflow runs (ingest, train, infer, stack) of a run."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentFlowRunId

    subs = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])))
    assert len(subs) == 4, [s.name for s in subs]
    runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[s.id for s in subs])))
    return {r.name: r.state_name for r in runs}


def test_deployment_runs_from_the_cli_and_reruns_from_cache(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows import local_server

    port, home, out = _free_port(), tmp_path / "prefect-local", tmp_path / "out"
    pids: dict = {}
    try:
        pids = local_server.up(port=port, home=home)
        env = local_server.server_env(home, port)
        # A bare deployment name is refused by Prefect itself (it needs flow/deployment).
        bare = subprocess.run([sys.executable, "-m", "prefect", "deployment", "run", "galaxy-codae"], env=env,
                              capture_output=True, text=True, timeout=120)
        assert bare.returncode != 0 and "<FLOW_NAME>/<DEPLOYMENT_NAME>" in bare.stdout + bare.stderr

        with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
            with get_client(sync_client=True) as client:
                first = _wait(client, _deployment_run(env, str(out)), RUN_TIMEOUT_S)
                assert first.state_name == "Completed", (first.state.message, (home / "worker.log").read_text()[-3000:])
                from catalogs.fits_io import read_catalog

                assert len(read_catalog(out / "catalog.fits", columns=["id"])) == 32
                assert (out / "stacks" / "all.fits").is_file()
                states1 = _task_states(client, first.id)
                assert "Cached" not in states1.values(), states1

                second = _wait(client, _deployment_run(env, str(out)), RUN_TIMEOUT_S)
                assert second.state_name == "Completed", second.state.message
                states2 = _task_states(client, second.id)
                assert set(states2.values()) == {"Cached"}, states2
                assert len(states2) == len(states1) >= 10  # plan, blocks, layout, shards, finalize, train, ...
    finally:
        local_server.down(home=home)
        for pid in [pids.get("server"), *pids.get("workers", [])]:  # belt and braces: nothing outlives the test
            if pid:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass

"""A local Prefect server with the galaxy-codae deployment and a worker: ``up``, ``down``, ``status``.

::

    python -m flows.local_server up [--port 4200] [--home .prefect-local]
    export PREFECT_API_URL=http://127.0.0.1:4200/api        # or: . .prefect-local/env.sh
    prefect deployment run galaxy-codae/galaxy-codae --param demo_n=500 --watch
    python -m flows.local_server down

``up``: starts ``prefect server start`` bound to 127.0.0.1 with its SQLite database and
``PREFECT_HOME`` under ``--home`` (default ``./.prefect-local/``), telemetry and analytics off;
creates the process work pool :data:`POOL` (``galaxy-codae-pool``); registers the deployment of
``prefect.yaml`` (``prefect --no-prompt deploy --name galaxy-codae``); starts a worker on the pool.
Each process is started in its own session (process group) and its PID recorded in
``HOME/pids.json``; logs go to ``HOME/server.log`` and ``HOME/worker.log``; ``HOME/env.sh``
exports the variables a shell needs to talk to this server.

A second ``up`` while processes of the same home are alive, or while the port answers, stops
with exit 1 and leaves them running; ``up`` that fails half-way stops what it started itself.

``down``: stops what ``up`` started, workers first (a worker may need a second SIGTERM), then
the server; each process group gets SIGTERM, a second SIGTERM, then SIGKILL if it will not go.
Flow runs a worker launched are in its process group and stop with it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from catalogs import atomic

__all__ = ["POOL", "DEPLOYMENT", "ROOT", "AlreadyRunning", "server_env", "up", "down", "status", "main"]

#: The process work pool the deployment runs on.
POOL = "galaxy-codae-pool"
#: ``flow-name/deployment-name``, as ``prefect deployment run`` wants it.
DEPLOYMENT = "galaxy-codae/galaxy-codae"
#: The repository root (holds prefect.yaml).
ROOT = Path(__file__).resolve().parents[1]


def _home(home: str | Path | None) -> Path:
    return Path(home).resolve() if home is not None else ROOT / ".prefect-local"


def server_env(home: Path, port: int) -> dict[str, str]:
    """Environment of every process ``up`` starts (and of a shell that uses the server)."""
    env = dict(os.environ)
    env.update({
        "PREFECT_HOME": str(home / "prefect-home"),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_WORKER_QUERY_SECONDS": env.get("PREFECT_WORKER_QUERY_SECONDS", "5"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    })
    return env


def _prefect() -> list[str]:
    return [sys.executable, "-m", "prefect"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _healthy(port: int, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _read_pids(home: Path) -> dict:
    f = home / "pids.json"
    return json.loads(f.read_text()) if f.is_file() else {}


def _write_pids(home: Path, pids: dict) -> None:
    atomic.write_json(home / "pids.json", pids)


class AlreadyRunning(RuntimeError):
    """``up`` found a server of this home, or another server on the port: nothing was started or stopped."""


def _spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as fh:
        return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)  # own process group: down stops it and its children


def _run(cmd: list[str], env: dict[str, str], log: Path) -> None:
    with open(log, "ab") as fh:
        r = subprocess.run(cmd, env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if r.returncode:
        raise RuntimeError(f"`{' '.join(cmd[2:])}` failed (exit {r.returncode}); see {log}")


def up(*, port: int = 4200, home: str | Path | None = None, timeout_s: float = 180.0) -> dict:
    """Start the server, create the pool, register the deployment, start a worker; returns the PID record.

    Raises :class:`AlreadyRunning` (and touches nothing) when a server of ``home`` is alive or the
    port already answers; on any later failure it stops what this call started, and only that,
    then raises :class:`RuntimeError`.
    """
    home = _home(home)
    home.mkdir(parents=True, exist_ok=True)
    pids = _read_pids(home)
    alive = [p for p in [pids.get("server"), *pids.get("workers", [])] if p and _alive(p)]
    if alive:
        raise AlreadyRunning(f"processes started from {home} are still running (pids {alive}); it is left as "
                             "it is: use it, or run down first")
    if _healthy(port, timeout=1.0):
        raise AlreadyRunning(f"port {port} already has a Prefect server; choose another --port")
    started: list[int] = []
    try:
        return _start(home, port, timeout_s, started)
    except BaseException:
        for pid in started:  # leave nothing running half set up: workers (kept first), then the server
            _stop_group(pid, grace_s=10.0, terms=2)
        if _read_pids(home).get("server") in started:
            (home / "pids.json").unlink(missing_ok=True)
        raise


def _start(home: Path, port: int, timeout_s: float, started: list[int]) -> dict:
    env = server_env(home, port)
    (home / "prefect-home").mkdir(exist_ok=True)
    pids = {"port": port, "home": str(home), "workers": []}
    server = _spawn(_prefect() + ["server", "start", "--host", "127.0.0.1", "--port", str(port)], env,
                    home / "server.log")
    started.append(server.pid)
    pids["server"] = server.pid
    _write_pids(home, pids)
    deadline = time.monotonic() + timeout_s
    while not _healthy(port):
        if server.poll() is not None:
            raise RuntimeError(f"prefect server exited with {server.returncode}; see {home / 'server.log'}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"prefect server not healthy after {timeout_s:.0f} s; see {home / 'server.log'}")
        time.sleep(1.0)
    setup_log = home / "setup.log"
    _run(_prefect() + ["work-pool", "create", POOL, "--type", "process", "--overwrite"], env, setup_log)
    _run(_prefect() + ["--no-prompt", "deploy", "--name", "galaxy-codae", "--prefect-file", str(ROOT / "prefect.yaml")],
         env, setup_log)
    worker = _spawn(_prefect() + ["worker", "start", "--pool", POOL, "--type", "process",
                                  "--name", f"galaxy-codae-worker-{port}"], env, home / "worker.log")
    started.insert(0, worker.pid)
    pids["workers"].append(worker.pid)
    _write_pids(home, pids)
    atomic.write_text(home / "env.sh",
                      f"# source this file to use the local galaxy-codae Prefect server\n"
                      f"export PREFECT_API_URL={env['PREFECT_API_URL']}\n"
                      f"export DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false\n")
    return pids


def _stop_group(pid: int, *, grace_s: float = 10.0, terms: int = 2) -> None:
    """SIGTERM the process group of ``pid`` (up to ``terms`` times), then SIGKILL it."""
    for _ in range(terms):
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if not _alive(pid):
                break
            _reap(pid)
            time.sleep(0.2)
        if not _alive(pid):
            break
    try:
        os.killpg(pid, signal.SIGKILL)  # the rest of the group (or a process that ignored SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
    _reap(pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)  # our own child (when up ran in this process): no zombie left
    except ChildProcessError:
        pass


def down(*, home: str | Path | None = None) -> list[int]:
    """Stop every process ``up`` started (workers first, then the server); returns the PIDs it stopped."""
    home = _home(home)
    pids = _read_pids(home)
    stopped = []
    for pid in pids.get("workers", []):
        _stop_group(pid, grace_s=10.0, terms=2)
        stopped.append(pid)
    if pids.get("server"):
        _stop_group(pids["server"], grace_s=20.0, terms=1)
        stopped.append(pids["server"])
    if (home / "pids.json").exists():
        (home / "pids.json").unlink()
    return stopped


def status(*, home: str | Path | None = None) -> dict:
    """Which recorded processes are alive, and whether the server answers."""
    home = _home(home)
    pids = _read_pids(home)
    port = pids.get("port")
    return {
        "home": str(home),
        "api_url": f"http://127.0.0.1:{port}/api" if port else None,
        "server": {"pid": pids.get("server"), "alive": bool(pids.get("server")) and _alive(pids["server"]),
                   "healthy": bool(port) and _healthy(port)},
        "workers": [{"pid": p, "alive": _alive(p)} for p in pids.get("workers", [])],
        "pool": POOL,
        "deployment": DEPLOYMENT,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="galaxy-codae-server", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--port", type=int, default=4200, help="loopback port of the server (default 4200)")
    parser.add_argument("--home", type=Path, default=None, help="state folder (default ./.prefect-local)")
    args = parser.parse_args(argv)
    if args.action == "up":
        try:
            pids = up(port=args.port, home=args.home)
        except RuntimeError as e:  # up stopped what it had started; a running server is left alone
            sys.stderr.write(f"galaxy-codae-server up: error: {e}\n")
            return 1
        home = Path(pids["home"])
        print(f"server   http://127.0.0.1:{args.port} (UI and API; pid {pids['server']}, log {home / 'server.log'})")
        print(f"pool     {POOL} (process); worker pid {pids['workers'][0]}, log {home / 'worker.log'}")
        print(f"deployed {DEPLOYMENT}")
        print(f"next     . {home / 'env.sh'}   # export PREFECT_API_URL=http://127.0.0.1:{args.port}/api")
        print(f"         prefect deployment run {DEPLOYMENT} --param demo_n=500 --watch")
        return 0
    if args.action == "down":
        stopped = down(home=args.home)
        print(f"stopped {len(stopped)} process groups: {stopped}" if stopped else "nothing to stop")
        return 0
    print(json.dumps(status(home=args.home), indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

"""``python -m flows.local_server``: a second ``up`` leaves the running server and worker alone."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from flows import local_server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def running(tmp_path):
    """Two long-lived processes in their own sessions, recorded as a home's server and worker."""
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
             for _ in range(2)]
    home = tmp_path / "home"
    home.mkdir()
    record = {"port": _free_port(), "home": str(home), "server": procs[0].pid, "workers": [procs[1].pid]}
    (home / "pids.json").write_text(json.dumps(record))
    yield home, procs, record
    for p in procs:
        p.kill()
        p.wait()


def test_a_second_up_exits_1_and_leaves_the_running_server_and_worker_alone(running, capsys):
    home, procs, record = running
    assert local_server.main(["up", "--home", str(home), "--port", str(_free_port())]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"galaxy-codae-server up: error: processes started from {home} "
                                               "are still running"), err
    assert [p.poll() for p in procs] == [None, None]  # both still running
    assert json.loads((home / "pids.json").read_text()) == record


def test_up_on_a_port_that_already_answers_starts_and_stops_nothing(tmp_path, capsys):
    class Health(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        assert local_server.main(["up", "--home", str(tmp_path / "h"), "--port", str(port)]) == 1
        assert f"port {port} already has a Prefect server" in capsys.readouterr().err
        assert not (tmp_path / "h" / "pids.json").exists()
    finally:
        server.shutdown()
        server.server_close()

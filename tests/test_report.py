"""The run report: one self-contained HTML page, checked as text and in a real browser (headless Chromium).

The browser test drives Debian's ``chromium`` through its DevTools protocol (a websocket, the
``websockets`` package): it opens the page from disk (``file://``), waits for the load, checks
that every ``<img>`` decoded (``naturalWidth > 0``), that the console logged no error, and that a
screenshot is not blank.  Without Chromium it skips, except under CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.cli import main
from pipeline.report import write_report

IMG_RE = re.compile(r'<img src="([^"]*)"')


@pytest.fixture(scope="module")
def run_out(demo_run, tmp_path_factory):
    """A run's output directory as the flow lays it out, from the session's demo run."""
    from tests.test_show import model_catalogue

    out = tmp_path_factory.mktemp("report") / "out"
    (out / "runs").mkdir(parents=True)
    (out / "store.zarr").symlink_to(demo_run["store"])
    shutil.copytree(Path(demo_run["checkpoint"]).parent, out / "runs" / "abc123")
    model_catalogue(out / "store.zarr", out / "runs" / "abc123" / "checkpoint.pt", out / "catalog.fits")
    (out / "stacks").mkdir()
    ramp = np.tile(np.linspace(0, 255, 96, dtype=np.uint8), (96, 1))
    Image.fromarray(ramp).save(out / "stacks" / "all-mean.png")
    return out


def test_report_is_one_self_contained_page(run_out, tmp_path):
    from pipeline.data.store import open_store

    html = write_report(run_out, tmp_path / "r.html").read_text()
    assert "<script" not in html.lower() and "http://" not in html and "https://" not in html
    sources = IMG_RE.findall(html)
    assert len(sources) == html.count("<img")
    # training figures (3), PA scatter, latent histograms, latent map, one stack, three searches
    assert len(sources) >= 10
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        im = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        im.load()
        assert im.width > 50 and im.height > 50
    counts = open_store(run_out / "store.zarr").info.attrs["counts"]
    assert f"<td>ingested</td><td class=n>{counts['stored']}</td>" in html
    assert f"<td>catalogued</td><td class=n>{counts['stored']}</td>" in html
    assert html.count("<h3>") >= 3 + 1 + 3  # figures, stack, searches
    for heading in ("Inputs", "Training", "Orientation", "Latent distributions", "Map of the latents", "Stacks",
                    "Galaxies like these"):
        assert f"<h2>{heading}" in html
    assert "abc123" in html and "the run whose checkpoint made the catalogue" in html


def test_report_says_what_is_missing(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    html = write_report(empty).read_text()
    assert "no store at" in html and "no catalogue at" in html and "no run directory" in html
    assert main(["report", str(empty)]) == 2  # the page exists now: refused without --overwrite
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["report", str(empty), "--overwrite"]) == 0
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err


# ---------------------------------------------------------------- in a browser


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class DevTools:
    """A minimal Chrome DevTools Protocol client over one browser websocket (flattened sessions)."""

    def __init__(self, url: str) -> None:
        from websockets.sync.client import connect

        self.ws = connect(url, max_size=64 * 2**20, open_timeout=30)
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        for e in self.events:
            if e.get("method") == method:
                return e
        while True:
            e = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            self.events.append(e)
            if e.get("method") == method:
                return e

    def close(self) -> None:
        self.ws.close()


def _launch(chromium: str, profile: str) -> tuple[subprocess.Popen, str]:
    """Start headless Chromium on a free DevTools port; returns (process, browser websocket URL)."""
    args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--remote-debugging-port=0", "--window-size=1200,900", "about:blank"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        m = re.search(r"DevTools listening on (ws://\S+)", line)
        if m:
            return proc, m.group(1)
    proc.kill()
    raise RuntimeError("chromium did not start its DevTools server: " + "".join(seen[-5:]))


def test_report_renders_in_chromium(run_out, tmp_path):
    chromium = _chromium()
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (CI must install it: .ci/run does)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    page = write_report(run_out, tmp_path / "report.html")
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)
    proc, url = _launch(chromium, profile)
    try:
        dt = DevTools(url)
        target = dt.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = dt.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            dt.send(f"{domain}.enable", session=session)
        dt.send("Emulation.setDeviceMetricsOverride",
                {"width": 1200, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
        dt.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        dt.wait_for("Page.loadEventFired", timeout=120)
        images = dt.send("Runtime.evaluate", {
            "expression": "Promise.all(Array.from(document.images).map(i => i.decode().then("
                          "() => [i.naturalWidth, i.naturalHeight], () => [0, 0])))",
            "awaitPromise": True, "returnByValue": True}, session=session)["result"]["value"]
        shot = dt.send("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
        errors = [e for e in dt.events
                  if (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
                  or e.get("method") == "Runtime.exceptionThrown"
                  or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
        dt.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert len(images) >= 10
    assert all(w > 0 and h > 0 for w, h in images), images
    assert errors == []
    screen = np.asarray(Image.open(io.BytesIO(base64.b64decode(shot))).convert("L"), dtype=np.float64)
    assert screen.shape == (900, 1200)
    assert screen.std() > 10 and (screen < 200).mean() > 0.02  # text and figures, not a blank page

"""One progress helper for every long step: a tqdm bar on a terminal, periodic lines in a log."""

from __future__ import annotations

import io
import re

import pytest

from pipeline.progress import Progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_start_at_once_then_every_few_percent_and_end_with_the_elapsed_time(monkeypatch):
    monkeypatch.delenv("GALAXY_CODAE_PROGRESS", raising=False)
    lines: list[str] = []
    with Progress("ingest: decoded", 1000, unit="cutouts", sink=lines.append, note="2 part(s) reused") as bar:
        assert lines == ["ingest: decoded: started (1000 cutouts) (2 part(s) reused)"]  # before any work is done
        for _ in range(1000):
            bar.update(1, rejected=3)
    assert 20 <= len(lines) <= 23  # one every 5 %, plus the first and the last
    first = lines[1]
    assert re.fullmatch(r"ingest: decoded: 1/1000 cutouts \(0%\), [\d.k]+ cutouts/s, ETA [\d:]+ \| rejected 3 "
                        r"\(2 part\(s\) reused\)", first), first
    assert re.fullmatch(r"ingest: decoded: 1000/1000 cutouts \(100%\), .* elapsed \| rejected 3 .*", lines[-1])
    percents = [int(m.group(1)) for line in lines[2:-1] if (m := re.search(r"\((\d+)%\)", line))]
    assert percents == sorted(percents) and all(b - a >= 5 for a, b in zip(percents, percents[1:]))


def test_a_log_file_gets_lines_and_a_terminal_gets_a_bar_with_rate_and_eta(monkeypatch):
    monkeypatch.delenv("GALAXY_CODAE_PROGRESS", raising=False)
    log = io.StringIO()
    with Progress("infer", 50, unit="objects", sink=True, stream=log) as bar:
        for _ in range(50):
            bar.update(1)
    text = log.getvalue()
    assert "\r" not in text and text.startswith("infer: started (50 objects)\n")
    assert text.splitlines()[-1].startswith("infer: 50/50 objects (100%)")
    tty = _Tty()
    with Progress("train", 40, unit="steps", sink=True, stream=tty) as bar:
        for _ in range(40):
            bar.update(1, loss=0.01)
    shown = tty.getvalue()
    assert "\r" in shown and "40/40" in shown and "steps/s" in shown and "loss 0.01" in shown
    monkeypatch.setenv("GALAXY_CODAE_PROGRESS", "lines")  # a terminal that wants lines
    tty = _Tty()
    with Progress("stack", 3, unit="cutouts", sink=True, stream=tty) as bar:
        bar.update(3)
    assert "\r" not in tty.getvalue() and "stack: 3/3 cutouts" in tty.getvalue()


@pytest.mark.parametrize("sink", [None, False])
def test_quiet_shows_nothing(sink, capsys):
    with Progress("x", 10, sink=sink) as bar:
        bar.update(10)
    assert capsys.readouterr().err == ""


def test_a_total_known_late_and_a_resumed_start(monkeypatch):
    monkeypatch.delenv("GALAXY_CODAE_PROGRESS", raising=False)
    lines: list[str] = []
    bar = Progress("train", None, unit="steps", sink=lines.append)
    assert lines == ["train: started"]
    bar.set_total(100, done=60)  # resumed at step 60
    bar.update(1)
    bar.close()
    assert lines[1].startswith("train: 61/100 steps (61%)") and lines[-1].startswith("train: 61/100 steps")


def test_a_time_budget_ends_the_eta_when_it_comes_before_the_count(monkeypatch):
    monkeypatch.delenv("GALAXY_CODAE_PROGRESS", raising=False)
    lines: list[str] = []
    with Progress("train", 10**9, unit="steps", sink=lines.append, budget_s=90) as bar:
        bar.update(1)  # a billion steps at any rate take longer than 90 s
    assert re.search(r", ETA 0?[01]:[0-5]\d \(time budget 01:30\)$", lines[1]), lines[1]
    lines.clear()
    with Progress("train", 2, unit="steps", sink=lines.append, budget_s=3600) as bar:
        bar.update(1)  # one step left: the count ends first
    assert "ETA" in lines[1] and "time budget" not in lines[1], lines[1]
    tty = _Tty()
    with Progress("train", 10**9, unit="steps", sink=True, stream=tty, budget_s=90) as bar:
        bar.update(1, loss=0.5)
    assert "loss 0.5, budget left 01:" in tty.getvalue() or "loss 0.5, budget left 00:" in tty.getvalue()

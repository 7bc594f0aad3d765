"""Progress of a long step: one helper for every command (demo-survey, ingest, train, infer, stack, evaluate).

``Progress(desc, total, unit=..., sink=...)`` is updated as work finishes (``update(n, **info)``)
and shows, depending on ``sink``:

- ``True`` and stderr is a terminal: a tqdm bar with the count, rate and ETA, and ``info`` after it;
- ``True`` and stderr is not a terminal (a log file, a batch job): a plain line
  ``desc: done/total unit (p%), rate unit/s, ETA h:mm:ss | info`` at the first update, then
  every :data:`EVERY_PERCENT` percent or :data:`EVERY_S` seconds, whichever comes first, and
  a last line at the end with the elapsed time;
- a callable (a logger, ``list.append``): the same plain lines, passed to it;
- ``False`` or ``None``: nothing.

``budget_s`` (a wall-clock budget in seconds, counted from the start, such as training's
``--max-minutes``): the ETA is the sooner of the count's and the budget's end, marked
``(time budget h:mm:ss)`` when the budget ends first; a bar shows ``budget left h:mm:ss`` after it.

Plain lines start with one at once (``desc: started``, with the total when known), so a job's
log shows at the start of the step that it began, however long its first unit takes.  ``GALAXY_CODAE_PROGRESS``
(``bar``, ``lines`` or ``off``) overrides the terminal test.  Rates and times are formatted by
tqdm (``tqdm.format_interval``, ``format_sizeof``).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from tqdm import tqdm

__all__ = ["EVERY_PERCENT", "EVERY_S", "Progress", "Sink"]

#: plain lines: one each time this many more percent are done ...
EVERY_PERCENT: float = 5.0
#: ... or this many seconds have passed, whichever comes first.
EVERY_S: float = 10.0

Sink = bool | Callable[[str], None] | None


def _format_info(info: dict[str, Any]) -> str:
    parts = []
    for key, value in info.items():
        if isinstance(value, float):
            value = f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
        parts.append(f"{key} {value}")
    return ", ".join(parts)


class Progress:
    """Progress of one step; use as a context manager or call :meth:`close` (see the module docstring).

    ``total``: units of work (None when unknown: no percentage or ETA).  ``note``: text shown in
    parentheses after every line (for example how many parts were reused).  ``stream``: where
    the bar and the lines go when ``sink`` is True (default stderr).  ``budget_s``: a time budget
    in seconds from the start; the time left is the sooner of the count's ETA and the budget's end.
    """

    def __init__(self, desc: str, total: int | None, *, unit: str = "it", sink: Sink = True, note: str = "",
                 stream: TextIO | None = None, every_percent: float = EVERY_PERCENT, every_s: float = EVERY_S,
                 initial: int = 0, budget_s: float | None = None) -> None:
        self.desc, self.total, self.unit, self.note = desc, total, unit, note
        self.budget_s = budget_s
        self.every_percent, self.every_s = every_percent, every_s
        self.n = self._start_n = initial
        self.info: dict[str, Any] = {}
        self._stream = stream if stream is not None else sys.stderr
        self._t0 = self._last_t = time.monotonic()
        self._last_pct = -1.0
        self._lines_written = 0
        self._closed = False
        self._bar: tqdm | None = None
        self._emit: Callable[[str], None] | None = None
        mode = os.environ.get("GALAXY_CODAE_PROGRESS", "").strip().lower()
        if sink is None or sink is False or mode == "off":
            return
        if callable(sink):
            self._emit = sink
        elif mode == "bar" or (mode != "lines" and _isatty(self._stream)):
            self._bar = tqdm(total=total, desc=desc, unit=unit, initial=initial, file=self._stream, dynamic_ncols=True,
                             mininterval=0.5, smoothing=0.1, leave=True)
            return
        else:
            self._emit = self._write_line
        of = f" ({total} {unit})" if total is not None else ""
        self._emit(f"{desc}: started{of}" + (f" ({note})" if note else ""))

    # -- output

    def _write_line(self, line: str) -> None:
        self._stream.write(line + "\n")
        self._stream.flush()

    def _line(self, final: bool) -> None:
        elapsed = time.monotonic() - self._t0
        done = self.n - self._start_n
        rate = done / elapsed if elapsed > 0 else 0.0
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        text = f"{self.desc}: {count} {self.unit}"
        if self.total:
            text += f" ({100.0 * self.n / self.total:.0f}%)"
        text += f", {tqdm.format_sizeof(rate) if rate >= 1000 else f'{rate:.3g}'} {self.unit}/s"
        if final:
            text += f", {tqdm.format_interval(elapsed)} elapsed"
        else:
            text += self._eta(elapsed, rate)
        if self.info:
            text += f" | {_format_info(self.info)}"
        if self.note:
            text += f" ({self.note})"
        self._lines_written += 1
        assert self._emit is not None
        self._emit(text)

    def _eta(self, elapsed: float, rate: float) -> str:
        """``, ETA h:mm:ss``: by the count, or by the time budget when that ends sooner; '' when unknown."""
        by_count = max(self.total - self.n, 0) / rate if self.total and rate > 0 else None
        by_budget = max(self.budget_s - elapsed, 0.0) if self.budget_s is not None else None
        if by_budget is not None and (by_count is None or by_budget < by_count):
            return f", ETA {tqdm.format_interval(by_budget)} (time budget {tqdm.format_interval(self.budget_s)})"
        return f", ETA {tqdm.format_interval(by_count)}" if by_count is not None else ""

    # -- updates

    def update(self, n: int = 1, **info: Any) -> None:
        """``n`` more units done; ``info`` (loss values, counts) is shown with the progress."""
        self.n += n
        if info:
            self.info.update(info)
        if self._bar is not None:
            if self.budget_s is not None:  # tqdm's ETA knows only the count
                left = max(self.budget_s - (time.monotonic() - self._t0), 0.0)
                postfix = _format_info(self.info) + (", " if self.info else "")
                self._bar.set_postfix_str(postfix + f"budget left {tqdm.format_interval(left)}", refresh=False)
            elif info:
                self._bar.set_postfix_str(_format_info(self.info), refresh=False)
            self._bar.update(n)
            return
        if self._emit is None:
            return
        now = time.monotonic()
        pct = 100.0 * self.n / self.total if self.total else 0.0
        due = (self._lines_written == 0 or now - self._last_t >= self.every_s
               or (self.total and pct - self._last_pct >= self.every_percent))
        if due and not (self.total and self.n >= self.total):  # the last line is close()'s
            self._last_t, self._last_pct = now, pct
            self._line(final=False)

    def set_total(self, total: int | None, *, done: int | None = None) -> None:
        """Set the amount of work when it is known only after the start, and the units ``done``
        before this step began (a resumed run): they count towards the total, not the rate."""
        self.total = total
        if done is not None:
            self.n = self._start_n = done
        if self._bar is not None:
            self._bar.total = total
            if done is not None:
                self._bar.n = self._bar.initial = done
            self._bar.refresh()

    def write(self, line: str) -> None:
        """A message that does not break the bar (a terminal) or goes beside the lines."""
        if self._bar is not None:
            self._bar.write(line, file=self._stream)
        elif self._emit is not None:
            self._emit(line)

    def close(self) -> None:
        """End the step: the bar's last refresh, or the last line with the elapsed time."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self._emit is not None:
            self._line(final=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False

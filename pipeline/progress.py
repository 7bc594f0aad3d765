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
    the bar and the lines go when ``sink`` is True (default stderr).
    """

    def __init__(self, desc: str, total: int | None, *, unit: str = "it", sink: Sink = True, note: str = "",
                 stream: TextIO | None = None, every_percent: float = EVERY_PERCENT, every_s: float = EVERY_S,
                 initial: int = 0) -> None:
        self.desc, self.total, self.unit, self.note = desc, total, unit, note
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
        elif self.total and rate > 0:
            text += f", ETA {tqdm.format_interval(max(self.total - self.n, 0) / rate)}"
        if self.info:
            text += f" | {_format_info(self.info)}"
        if self.note:
            text += f" ({self.note})"
        self._lines_written += 1
        assert self._emit is not None
        self._emit(text)

    # -- updates

    def update(self, n: int = 1, **info: Any) -> None:
        """``n`` more units done; ``info`` (loss values, counts) is shown with the progress."""
        self.n += n
        if info:
            self.info.update(info)
        if self._bar is not None:
            if info:
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

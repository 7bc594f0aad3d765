"""The report's HTML pieces: the style sheet, escaped text, a note for a missing part, inline PNG images.

Every image is a PNG inside the page as a ``data:image/png;base64`` URI, so the page needs no
other file.
"""

from __future__ import annotations

import base64
import html
import io

from pipeline import __version__

__all__ = ["CSS", "esc", "img", "missing", "figure_png"]

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em auto;max-width:1100px;color:#222;
padding:0 1em;line-height:1.4}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
h3{font-size:1em;margin-bottom:.3em}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto;display:block;margin:.3em 0 1em}code{background:#f4f4f4;padding:0 .2em}
.note{color:#666;font-size:.9em}.missing{color:#a40}
"""


def esc(text: object) -> str:
    """``text`` escaped for HTML (quotes too)."""
    return html.escape(str(text), quote=True)


def img(png: bytes, alt: str) -> str:
    """An ``<img>`` holding ``png`` as a data URI."""
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return f'<img src="{uri}" alt="{esc(alt)}">'


def missing(text: str) -> str:
    """A paragraph saying what part of the page is missing and why."""
    return f'<p class="missing">{esc(text)}</p>'


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes (90 dpi, signed); the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": f"galaxy-codae {__version__}"})
    plt.close(fig)
    return buf.getvalue()

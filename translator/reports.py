"""Pieces the report writers share: a run's per-epoch log, and figures embedded in HTML."""

from __future__ import annotations

import base64
import csv
import io
from pathlib import Path


def read_log(run: Path) -> list[dict]:
    """The rows of the run's log.csv (one per epoch), or [] before the first epoch."""
    path = run / "log.csv"
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def png(figure) -> str:
    """A matplotlib figure as base64 PNG for a data: URL (the figure is closed)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")

"""Built-in reporters: findings as JSON (the stable model) and as CSV (UTF-8
with BOM, one row per finding, for spreadsheet users)."""

from __future__ import annotations

import csv
import io
import json
from typing import IO, Any

from custodes.hookspecs import hookimpl
from custodes.plugins import Reporter

CSV_COLUMNS = ("kind", "severity", "article", "device", "path", "start", "end", "duration", "message")


def _findings(report: Any) -> list[dict[str, Any]]:
    return [f.to_json() if hasattr(f, "to_json") else dict(f) for f in report.get("findings", [])]


def render_json(report: Any, out: IO[bytes]) -> None:
    body = {**{k: v for k, v in report.items() if k != "findings"}, "findings": _findings(report)}
    out.write(json.dumps(body, indent=2, ensure_ascii=False, default=str).encode("utf-8", "backslashreplace") + b"\n")


def render_csv(report: Any, out: IO[bytes]) -> None:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for f in _findings(report):
        writer.writerow(f)
    out.write(b"\xef\xbb\xbf" + text.getvalue().encode("utf-8", "backslashreplace"))


@hookimpl
def custodes_reporters() -> list[Reporter]:
    return [
        Reporter("json", "the complete report model, for agency tools", "application/json", ".json", render_json),
        Reporter("csv", "one row per finding, UTF-8 with BOM", "text/csv", ".csv", render_csv),
    ]

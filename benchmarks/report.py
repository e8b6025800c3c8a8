"""How every benchmark ends: its tables in Markdown on stdout (benchmarks/README.md quotes them as
printed), then its results as JSON: a file with ``--json`` (written atomically) and one line on
stdout for a caller that reads the last line."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from aggan.images import write_json


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table: the header row, the separator, one line per row (cells as ``str``)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)


def placement_cell(nats: float, stderr: float, hit_rate: float) -> str:
    """A mask placement as the tables show it: ``+0.83 +- 0.12 (73%)``."""
    return f"{nats:+.2f} +- {stderr:.2f} ({hit_rate:.0%})"


def finish(results: Any, path: Path | None, line: Any = None) -> None:
    """Writes ``results`` to ``path`` when given; prints ``line`` (default: ``results``) as one
    JSON line."""
    if path:
        write_json(path, results)
    print(json.dumps(results if line is None else line))

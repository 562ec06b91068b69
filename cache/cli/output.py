"""Rendering for the CLI: Rich on a terminal, plain lines in pipes, JSON on request."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..engine import Progress


class Output:
    def __init__(self, json_mode: bool, quiet: bool = False) -> None:
        self.json_mode = json_mode
        self.quiet = quiet
        self.tty = sys.stderr.isatty()

    def json(self, value: Any) -> None:
        print(json.dumps(value, indent=2, sort_keys=True, default=str))

    def line(self, text: str) -> None:
        print(text)

    def info(self, text: str) -> None:
        if not self.json_mode and not self.quiet:
            print(text, file=sys.stderr)

    def error(self, text: str) -> None:
        if self.json_mode:
            print(json.dumps({"error": text}), file=sys.stderr)
        else:
            print(f"shardcache: error: {text}", file=sys.stderr)

    def warn(self, text: str) -> None:
        if not self.json_mode:
            print(f"shardcache: warning: {text}", file=sys.stderr)

    def table(self, title: str, columns: list[str], rows: list[list[str]]) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title)
        for i, col in enumerate(columns):
            table.add_column(col, justify="left" if i == 0 else "right")
        for row in rows:
            table.add_row(*row)
        Console(width=None if sys.stdout.isatty() else 120).print(table)

    @contextmanager
    def progress(self, description: str) -> Iterator[Any]:
        """Yield a callback taking `Progress`; a Rich bar on a TTY, nothing otherwise."""
        if self.json_mode or self.quiet or not self.tty:
            yield lambda p: None
            return
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as RichProgress

        bar = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[objects]} objects"),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        with bar:
            task = bar.add_task(description, total=None, objects="0/?")

            def update(p: Progress) -> None:
                bar.update(
                    task,
                    total=p.bytes_total,
                    completed=p.bytes_done,
                    objects=f"{p.objects_done}/{p.objects_total}",
                )

            yield update

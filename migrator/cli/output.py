"""How read commands print: ``-o table|wide|json|yaml|name`` and ``--no-headers``, as kubectl does.

A command describes its rows as plain dicts and its columns as data (``Column``); this module
turns them into a table sized to the terminal (rich), JSON, YAML, or one name per line.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from io import StringIO
from typing import Any

import click
import yaml

FORMATS = ("table", "wide", "json", "yaml", "name")
# Piped output is never cut to a width: another program reads it.
UNLIMITED_WIDTH = 100_000


@dataclass(frozen=True)
class Column:
    header: str
    key: str
    wide_only: bool = False  # only with -o wide
    no_wrap: bool = False  # names: never broken over lines, even on a narrow terminal


def output_options(default: str = "table") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add ``-o/--output`` and ``--no-headers``; the command receives ``output`` and ``no_headers``."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        command = click.option(
            "--no-headers", is_flag=True, help="Print table and wide output without the header line."
        )(command)
        return click.option(
            "-o",
            "--output",
            "output",
            type=click.Choice(FORMATS),
            default=default,
            show_default=True,
            help="Output format: table, wide (more columns), json, yaml, or name (one per line).",
        )(command)

    return decorate


def _width() -> int:
    if sys.stdout.isatty():
        return shutil.get_terminal_size((120, 24)).columns
    return UNLIMITED_WIDTH


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-" if value is None else ""
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], *, wide: bool, no_headers: bool) -> str:
    """Left-aligned columns without borders; long cells wrap (names do not) to fit the terminal."""
    from rich.console import Console
    from rich.table import Table

    shown = [c for c in columns if wide or not c.wide_only]
    cells = [[_cell(row.get(c.key)) for c in shown] for row in rows]
    grid = Table(box=None, show_header=not no_headers, header_style="", pad_edge=False, padding=(0, 2, 0, 0))
    for column in shown:
        grid.add_column(column.header, no_wrap=column.no_wrap, overflow="fold")
    for line in cells:
        grid.add_row(*line)
    # Narrower than its names and words, rich would drop whole columns (STATUS among them) and cut names:
    # such a table is printed as if piped, a row a line, and the terminal wraps the lines.
    width = _width()
    if _narrowest(shown, cells) > width:
        width = UNLIMITED_WIDTH
    buffer = StringIO()
    console = Console(file=buffer, width=width, color_system=None, highlight=False, markup=False, emoji=False)
    console.print(grid, soft_wrap=False)
    return "\n".join(line.rstrip() for line in buffer.getvalue().rstrip("\n").splitlines())


def _narrowest(columns: Sequence[Column], cells: Sequence[Sequence[str]]) -> int:
    """The narrowest width that shows every column: names whole, other cells wrapped between words."""
    total = 0
    for i, column in enumerate(columns):
        texts = [column.header, *(line[i] for line in cells)]
        if column.no_wrap:
            total += max(len(text) for text in texts)
        else:
            total += max(len(word) for text in texts for word in text.split() or [""])
    return total + 2 * max(len(columns) - 1, 0)


def render(
    document: Any,
    fmt: str,
    *,
    rows: Sequence[dict[str, Any]] = (),
    columns: Sequence[Column] = (),
    no_headers: bool = False,
    names: Sequence[str] = (),
) -> str:
    """``document`` for json/yaml, ``rows``×``columns`` for table/wide, ``names`` for name."""
    if fmt == "json":
        return json.dumps(document, indent=2 if sys.stdout.isatty() else None, ensure_ascii=False)
    if fmt == "yaml":
        return yaml.safe_dump(document, sort_keys=False, allow_unicode=True).rstrip("\n")
    if fmt == "name":
        return "\n".join(names)
    return table(rows, columns, wide=fmt == "wide", no_headers=no_headers)


def echo(text: str) -> None:
    if text:
        click.echo(text)

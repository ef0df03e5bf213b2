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
    grid = Table(box=None, show_header=not no_headers, header_style="", pad_edge=False, padding=(0, 2, 0, 0))
    for column in shown:
        grid.add_column(column.header, no_wrap=column.no_wrap, overflow="fold")
    for row in rows:
        grid.add_row(*(_cell(row.get(c.key)) for c in shown))
    buffer = StringIO()
    console = Console(file=buffer, width=_width(), color_system=None, highlight=False, markup=False, emoji=False)
    console.print(grid, soft_wrap=False)
    return "\n".join(line.rstrip() for line in buffer.getvalue().rstrip("\n").splitlines())


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

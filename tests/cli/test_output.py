"""The read commands' output module: columns as data, a table that never breaks a long name."""

from __future__ import annotations

import json

import yaml

from migrator.cli.output import Column, render

COLUMNS = (Column("NAME", "name", no_wrap=True), Column("PHASE", "phase"), Column("PID", "pid", wide_only=True))
ROWS = [
    {"name": "a-virtual-machine-whose-name-is-longer-than-thirty-two-characters", "phase": "Running", "pid": 7},
    {"name": "web01", "phase": "Stopped", "pid": None},
]


def test_table_keeps_long_names_whole_and_columns_aligned() -> None:
    lines = render(ROWS, "table", rows=ROWS, columns=COLUMNS).splitlines()
    assert lines[0].split() == ["NAME", "PHASE"]
    starts = {line.index(word) for line, word in zip(lines, ["PHASE", "Running", "Stopped"], strict=True)}
    assert len(starts) == 1  # one column, whatever the first one's width
    assert lines[1].startswith(ROWS[0]["name"] + "  ")


def test_wide_no_headers_name_json_yaml() -> None:
    wide = render(ROWS, "wide", rows=ROWS, columns=COLUMNS, no_headers=True).splitlines()
    assert len(wide) == 2 and wide[0].split()[-1] == "7" and wide[1].split()[-1] == "-"
    names = [str(r["name"]) for r in ROWS]
    assert render(ROWS, "name", names=names).splitlines() == names
    assert json.loads(render(ROWS, "json")) == ROWS
    assert yaml.safe_load(render(ROWS, "yaml")) == ROWS


def test_a_narrow_terminal_drops_no_column_and_cuts_no_name(monkeypatch) -> None:
    """On an 80-column terminal, two 51-character names (VM and TARGET) left rich no room for the other columns:
    it dropped them all (STATUS included). A table too wide for the terminal is printed whole instead."""
    from migrator.cli import output

    monkeypatch.setattr(output, "_width", lambda: 80)
    name = "app-with-a-really-long-name-exceeding-32-characters"
    columns = (
        Column("VM", "vm", no_wrap=True),
        Column("TARGET", "target", no_wrap=True),
        Column("CPU", "cpu"),
        Column("NETWORKS", "networks"),
        Column("STATUS", "status"),
    )
    rows = [{"vm": name, "target": name, "cpu": "1 (1x1)", "networks": "VM Network→pod", "status": "ok, 4 warning(s)"}]
    lines = render(rows, "table", rows=rows, columns=columns).splitlines()
    assert lines[0].split() == ["VM", "TARGET", "CPU", "NETWORKS", "STATUS"], lines
    assert len(lines) == 2 and lines[1].split() == [
        name,
        name,
        "1",
        "(1x1)",
        "VM",
        "Network→pod",
        "ok,",
        "4",
        "warning(s)",
    ]
    short = [{"vm": "web01", "target": "web01", "cpu": "1 (1x1)", "networks": "a " * 60, "status": "ok"}]
    assert max(len(line) for line in render(short, "table", rows=short, columns=columns).splitlines()) <= 80

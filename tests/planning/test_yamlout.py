"""The fast YAML writer: PyYAML reads back exactly what was written, for every awkward string."""

from __future__ import annotations

import yaml

from migrator.planning.yamlout import dump

TRICKY = [
    "",
    " x",
    "x ",
    "yes",
    "No",
    "ON",
    "off",
    "y",
    "N",
    "null",
    "~",
    "123",
    "1e3",
    "0x1F",
    "12:30",
    "- a",
    "a: b",
    "a #b",
    "#x",
    "[ds1] vm/vm.vmdk",
    "VM Network",
    "Fedora 20",
    "*glob",
    "&anchor",
    "!tag",
    "%x",
    "@x",
    "`x",
    "'q'",
    '"dq"',
    "a\nb",
    "é ü",
    "tab\tx",
    "/vmfs/volumes/5458b680-34ec3500/ISOs/a.iso",
    "2024-01-01",
    "2024-01-01T00:00:00+00:00",
    "1.5",
    ".5",
    "+1",
    "-1",
    "0o17",
    "=",
    "<<",
    "a,b",
    "{x}",
    "|",
    ">",
    "x:",
    "x?",
    "?x",
    "00:50:56:9b:5f:0d",
    "True",
    "1_000",
    "0b101",
    ".inf",
    ".NaN",
    "multus:ns/net",
    "DC0_H0_VM0",
    "a  b",
    "back\\slash",
]


def test_round_trip_of_awkward_data() -> None:
    data = {
        "strings": TRICKY,
        "nested": [{"a": [], "b": {}, "c": [{"d": 1, "e": [1, 2, {"f": None}]}], "g": [[1, 2], [], [[3]]]}],
        "bools": [True, False],
        "numbers": [0, -5, 1.25, 2**63],
        "weird key: x": 1,
        "123": "k",
        "yes": "no",
        "empty": {},
    }
    assert yaml.safe_load(dump(data)) == data
    for value in TRICKY:
        assert yaml.safe_load(dump({"k": value}))["k"] == value, value
        assert yaml.safe_load(dump([value])) == [value], value


def test_block_style_is_readable() -> None:
    text = dump({"vms": [{"name": "web01", "disks": [{"label": "Hard disk 1", "capacity_bytes": 1024}]}]})
    assert text == "vms:\n- name: web01\n  disks:\n  - label: Hard disk 1\n    capacity_bytes: 1024\n"

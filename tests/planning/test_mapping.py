"""Network and storage maps from a YAML file and flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import InputError
from core.plan import NetworkTarget
from migrator.planning.mapping import build_maps, load_map_file, parse_size


def test_map_file_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "map.yaml"
    path.write_text(
        "networks:\n  VM Network: pod\n  backup: multus:infra/backup-net\n  junk: ignore\n"
        "storage:\n  ds1: fast\n  ds2: {storageClass: slow, maxVolumeSize: 2Ti}\n"
    )
    maps = build_maps(str(path), network_flags=["junk=pod"], storage_flags=["ds1=faster"])
    assert maps.networks["VM Network"].target is NetworkTarget.POD
    assert maps.networks["backup"].multus == "infra/backup-net"
    assert maps.networks["junk"].target is NetworkTarget.POD  # the flag wins over the file
    assert maps.storage["ds1"].storage_class == "faster"
    assert maps.storage["ds2"].max_volume_bytes == 2 * 2**40


def test_flag_with_equals_in_network_name() -> None:
    maps = build_maps(network_flags=["a=b=multus:ns/n"])
    assert maps.networks["a=b"].multus == "ns/n"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("networks: [a, b]\n", "must be mappings"),
        ("networks:\n  a: bridge\n", "expected pod, ignore or multus"),
        ("networks:\n  a: multus:Bad_NS/x\n", "multus:NAMESPACE/NAME"),
        ("storage:\n  ds: Not A Class\n", "not a storage class"),
        ("nets: {}\n", "unknown keys"),
        ("networks: {a: pod\n", "not valid YAML"),
        ("- just a list\n", "must be a mapping"),
    ],
)
def test_malformed_map_file(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "map.yaml"
    path.write_text(content)
    with pytest.raises(InputError, match=needle):
        load_map_file(str(path))


def test_unreadable_map_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_map_file(str(tmp_path / "nope.yaml"))
    with pytest.raises(InputError, match="cannot read"):
        load_map_file(str(tmp_path))


def test_bad_flags() -> None:
    with pytest.raises(InputError, match="SOURCE=TARGET"):
        build_maps(network_flags=["no-equals"])
    with pytest.raises(InputError, match="expected pod or ignore"):
        build_maps(default_network="multus")


def test_quantities() -> None:
    assert parse_size("500Gi", "x") == 500 * 2**30
    assert parse_size("1T", "x") == 10**12
    assert parse_size(42, "x") == 42
    with pytest.raises(InputError):
        parse_size("lots", "x")

"""User mistakes are one line and exit 2, not an internal error (issue 12)."""

from __future__ import annotations

from pathlib import Path

from migrator.sources.vmx import open_vmx
from tests.convert.helpers import make_vmdk, migrator, write_vmx


def _one_line(result) -> str:  # type: ignore[no-untyped-def]
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, (result.returncode, result.stderr)
    assert "internal error" not in lines[0]
    return lines[0]


def _vm(tmp_path: Path) -> Path:
    folder = tmp_path / "vm"
    folder.mkdir()
    make_vmdk(folder / "web.vmdk")
    return write_vmx(folder / "web.vmx", "web", ["web.vmdk"])


def test_output_dir_under_a_file(tmp_path: Path) -> None:
    vmx = _vm(tmp_path)
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "out"
    line = _one_line(migrator("convert", "--source", f"vmx:{vmx}", "--vm", "web", "--output-dir", str(out)))
    assert str(out) in line and "not a folder" in line


def test_a_file_that_is_not_a_tar_as_an_ova(tmp_path: Path) -> None:
    junk = tmp_path / "junk.ova"
    junk.write_bytes(b"\x89PNG not a tar at all" * 100)
    for command in (
        ["plan", "--source", f"ova:{junk}", "--output-file", "-"],
        ["convert", "--source", f"ova:{junk}", "--vm", "x", "--output-dir", str(tmp_path / "out")],
    ):
        assert "not a tar archive" in _one_line(migrator(*command))


def test_vmx_in_invalid_utf8_is_refused_not_read_as_latin1(tmp_path: Path) -> None:
    vmx = _vm(tmp_path)
    vmx.write_bytes(vmx.read_bytes().replace(b'displayName = "web"', b'displayName = "caf\xe9-\xff"'))
    line = _one_line(migrator("plan", "--source", f"vmx:{vmx}", "--output-file", "-"))
    assert "is not valid UTF-8" in line and "line 4" in line and "0xe9" in line


def test_vmx_that_declares_its_encoding_is_read_in_it(tmp_path: Path) -> None:
    vmx = _vm(tmp_path)
    text = vmx.read_bytes().replace(b'.encoding = "UTF-8"', b'.encoding = "windows-1252"')
    vmx.write_bytes(text.replace(b'displayName = "web"', b'displayName = "caf\xe9"'))
    [vm] = open_vmx(str(vmx)).inventory().vms
    assert vm.name == "café"

"""Seeding the simulator for real: datastore uploads over HTTP and a VM reconfigured onto them."""

from __future__ import annotations

import os
import subprocess
import urllib.request
from pathlib import Path

import pytest

from migrator import simulator
from migrator.simulator import seed
from migrator.sources import SourceOptions, open_source
from migrator.sources.vsphere import VSphereSource

ENV = "MIGRATOR_TEST_SEED_PASSWORD"


def get(source: VSphereSource, backing_file: str) -> bytes:
    request = urllib.request.Request(source.datastore_file_url(backing_file), headers=source.http_headers())
    with urllib.request.urlopen(request, context=source.ssl_context()) as response:
        data: bytes = response.read()
    return data


def test_attach_disk_image_uploads_and_repoints_the_first_disk(
    fresh_vcsim: simulator.Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = tmp_path / "guest.raw"
    payload = os.urandom(256 * 1024)
    with raw.open("wb") as out:
        out.write(payload)
        out.truncate(3 * 1024 * 1024)
    subprocess.run(
        ["qemu-img", "convert", "-O", "vmdk", "-o", "subformat=monolithicFlat", str(raw), str(tmp_path / "guest.vmdk")],
        check=True,
    )
    files = [tmp_path / "guest.vmdk", tmp_path / "guest-flat.vmdk"]
    backing = seed.attach_disk_image(fresh_vcsim, "DC0_H0_VM1", files, mac="00:50:56:12:34:56", power_off=True)
    assert backing == "[LocalDS_0] DC0_H0_VM1/guest.vmdk"

    monkeypatch.setenv(ENV, fresh_vcsim.password)
    source = open_source(fresh_vcsim.source_url(), SourceOptions(insecure=True, password_env=ENV, prompt=False))
    assert isinstance(source, VSphereSource)
    try:
        vm = source.vm_inventory("DC0_H0_VM1")
        disk = vm.disks[0]
        assert disk.backing_file == backing and disk.capacity_bytes == 3 * 1024 * 1024
        assert disk.allocated_bytes == 3 * 1024 * 1024  # the flat extent, as layoutEx reports it
        assert vm.nics[0].mac == "00:50:56:12:34:56"
        assert vm.power_state.value == "poweredOff"
        # The bytes really are on the datastore, behind the /folder endpoint.
        assert get(source, "[LocalDS_0] DC0_H0_VM1/guest-flat.vmdk") == raw.read_bytes()
        assert get(source, backing) == files[0].read_bytes()
        # Another VM is untouched.
        other = source.vm_inventory("DC0_H0_VM0")
        assert other.disks[0].backing_file == "[LocalDS_0] DC0_H0_VM0/disk1.vmdk"
        assert other.nics[0].mac != "00:50:56:12:34:56"

        # upload_file on its own, through an open source: round trip of arbitrary bytes.
        blob = tmp_path / "notes.txt"
        blob.write_bytes(b"hello datastore\n")
        assert seed.upload_file(source, blob, "LocalDS_0", "seeded/notes.txt") == "[LocalDS_0] seeded/notes.txt"
        assert get(source, "[LocalDS_0] seeded/notes.txt") == b"hello datastore\n"
    finally:
        source.close()


def test_attach_disk_image_capacity_override_and_errors(fresh_vcsim: simulator.Simulator, tmp_path: Path) -> None:
    image = tmp_path / "small.vmdk"
    subprocess.run(["qemu-img", "create", "-f", "vmdk", str(image), "1M"], check=True, capture_output=True)
    backing = seed.attach_disk_image(fresh_vcsim, "DC0_C0_RP0_VM0", [image], capacity_bytes=8 * 1024 * 1024)
    with seed.session(fresh_vcsim) as source:
        assert source.vm_inventory("DC0_C0_RP0_VM0").disks[0].capacity_bytes == 8 * 1024 * 1024
        assert source.vm_inventory("DC0_C0_RP0_VM0").disks[0].backing_file == backing
    with pytest.raises(Exception, match="not found"):
        seed.attach_disk_image(fresh_vcsim, "no-such-vm", [image])

"""`convert --source ovf:PATH` and `ova:PATH` on the CentOS sample descriptor with a real streamOptimized VMDK."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

from tests.conftest import SAMPLES_OVF
from tests.convert.helpers import images_equal, load_yaml, make_vmdk, migrator
from tests.k8s_schema import validate_manifest

SAMPLE = SAMPLES_OVF / "CentOS__centos.ovf"  # VM "centos", one disk: centos-disk1.vmdk (streamOptimized)


def _package(tmp: Path) -> tuple[Path, Path, Path]:
    folder = tmp / "ovf"
    folder.mkdir()
    descriptor = folder / "centos.ovf"
    shutil.copyfile(SAMPLE, descriptor)
    vmdk = make_vmdk(folder / "centos-disk1.vmdk", "8M", 0x5A, "streamOptimized")
    ova = tmp / "centos.ova"
    with tarfile.open(ova, "w") as tar:  # the descriptor first, as OVA requires
        tar.add(descriptor, arcname="centos.ovf")
        tar.add(vmdk, arcname="centos-disk1.vmdk")
    return descriptor, vmdk, ova


def test_ovf_and_ova_sources(tmp_path: Path) -> None:
    descriptor, vmdk, ova = _package(tmp_path)
    for spec, out in ((f"ovf:{descriptor}", tmp_path / "out-ovf"), (f"ova:{ova}", tmp_path / "out-ova")):
        result = migrator("convert", "--source", spec, "--vm", "centos", "--output-dir", str(out))
        assert result.returncode == 0, result.stderr
        assert images_equal(vmdk, out / "centos-disk-0.img")
        vm = load_yaml(out / "centos-vm.yaml")
        validate_manifest(vm)
        assert vm["spec"]["template"]["spec"]["domain"]["memory"]["guest"] == "1024Mi"
        pvc = load_yaml(out / "centos-disk-0-pvc.yaml")
        validate_manifest(pvc)
        assert pvc["spec"]["resources"]["requests"]["storage"] == "5418Mi"  # the OVF's 5 GiB + file-system room
        assert not (out / ".migrator" / "ova").exists()  # extracted OVA members are cleaned up
        again = migrator("convert", "--source", spec, "--vm", "centos", "--output-dir", str(out))
        assert again.returncode == 0 and "already converted, skipped" in again.stderr

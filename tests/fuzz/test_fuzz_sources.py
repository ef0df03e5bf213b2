"""Fuzz the VMX, OVF and OVA readers: any input is a VM list or one of our errors, never a traceback."""

from __future__ import annotations

import io
import tarfile
import tempfile
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from migrator.sources.ovf import open_ova, open_ovf
from migrator.sources.vmx import open_vmx, parse_vmx, read_vmdk
from tests.conftest import SAMPLES_OVF, SAMPLES_VMX
from tests.fuzz.bounded import bounded, mutate

OVF_SAMPLES = sorted(SAMPLES_OVF.glob("*.ovf"))
VMX_SAMPLES = sorted(SAMPLES_VMX.glob("*.vmx"))
EDITS = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 64), st.binary(max_size=64)), max_size=8)
KEYS = st.sampled_from(
    [
        "displayName", "memsize", "numvcpus", "cpuid.coresPerSocket", "scsi0.present", "scsi0.virtualDev",
        "scsi0:0.present", "scsi0:0.fileName", "scsi0:0.deviceType", "sata0:1.present", "ide0:0.fileName",
        "ethernet0.present", "ethernet0.address", "ethernet0.addressType", "firmware", "uuid.bios",
        "checkpoint.vmsdFileName", "sched.cpu.affinity", "numa.nodeAffinity", "pciPassthru0.present", ".encoding",
        "nvme0.present", "nvme0:0.present", "nvme0:0.fileName", "guestinfo.hostname",
    ]
)  # fmt: skip
VALUES = st.one_of(
    st.text(max_size=40),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["TRUE", "FALSE", "efi", "0x10", "web.vmdk", "../x", "/etc/shadow", "a.iso", "1,2,3", "UTF-8"]),
)
VMX_TEXT = st.lists(st.tuples(KEYS, VALUES), max_size=30).map(
    lambda pairs: "\n".join(f'{k} = "{v}"' for k, v in pairs).encode("utf-8", "surrogatepass")
)


def _in_folder(
    name: str, data: bytes, extra: dict[str, bytes] | None = None
) -> tuple[tempfile.TemporaryDirectory, Path]:  # type: ignore[type-arg]
    folder = tempfile.TemporaryDirectory(prefix="migrator-fuzz-")
    path = Path(folder.name) / name
    path.write_bytes(data)
    for other, content in (extra or {}).items():
        (Path(folder.name) / other).write_bytes(content)
    return folder, path


def _vmx_inventory(data: bytes, extra: dict[str, bytes] | None = None) -> None:
    folder, path = _in_folder("vm.vmx", data, extra)
    with folder:
        bounded(lambda: open_vmx(str(path)).inventory())


@given(VMX_TEXT)
@example(b'sched.cpu.affinity = "\xc2\xb9"')  # found by `make fuzz`: a Unicode digit that int() refuses
def test_vmx_structured(data: bytes) -> None:
    _vmx_inventory(
        data, {"web.vmdk": b'# Disk DescriptorFile\ncreateType="monolithicFlat"\nRW 16 FLAT "web-flat.vmdk" 0\n'}
    )


@given(st.sampled_from(VMX_SAMPLES), EDITS)
def test_vmx_mutated_samples(sample: Path, edits: list[tuple[int, int, bytes]]) -> None:
    _vmx_inventory(mutate(sample.read_bytes(), edits))


@given(st.text(max_size=2000))
def test_vmx_lines(text: str) -> None:
    bounded(parse_vmx, text, "fuzz.vmx")


@given(st.binary(max_size=4096), EDITS)
def test_vmdk_as_read_by_plan(data: bytes, edits: list[tuple[int, int, bytes]]) -> None:
    """The plan's own look at a VMDK (capacity, extents): text descriptors and KDMV sparse headers."""
    header = b"KDMV" + data
    for blob in (
        mutate(header, edits),
        mutate(b'# Disk DescriptorFile\ncreateType="vmfs"\nRW 8 VMFS "x.vmdk"\n', edits),
    ):
        folder, path = _in_folder("disk.vmdk", blob)
        with folder:
            bounded(read_vmdk, path)


@given(st.sampled_from(OVF_SAMPLES), EDITS)
def test_ovf_mutated_samples(sample: Path, edits: list[tuple[int, int, bytes]]) -> None:
    folder, path = _in_folder("vm.ovf", mutate(sample.read_bytes(), edits))
    with folder:
        bounded(lambda: open_ovf(str(path)).inventory())


@given(st.binary(max_size=4096))
def test_ovf_bytes(data: bytes) -> None:
    folder, path = _in_folder("vm.ovf", b"<?xml version='1.0'?><Envelope>" + data)
    with folder:
        bounded(lambda: open_ovf(str(path)).inventory())


def test_ovf_entity_expansion_is_refused_or_bounded() -> None:
    """The 'billion laughs' in an OVF: expat refuses it (amplification limit), never gigabytes."""
    entities = '<!ENTITY a0 "lollollollollollollollollollol">' + "".join(
        f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10)
    )
    data = f'<?xml version="1.0"?><!DOCTYPE Envelope [{entities}]><Envelope><x>&a9;</x></Envelope>'.encode()
    folder, path = _in_folder("bomb.ovf", data)
    with folder:
        result = bounded(lambda: open_ovf(str(path)).inventory())
    assert not hasattr(result, "vms")


def _tar(members: list[tuple[str, bytes, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data, kind in members:
            info = tarfile.TarInfo(name or "x")
            info.size = len(data)
            if kind == b"l":
                info.type, info.linkname, info.size = tarfile.SYMTYPE, "/etc/shadow", 0
            tar.addfile(info, io.BytesIO(data) if info.size else None)
    return buffer.getvalue()


MEMBER = st.tuples(
    st.sampled_from(["vm.ovf", "disk1.vmdk", "../x.vmdk", "/abs.vmdk", "a/b.ovf", "x.mf"]),
    st.binary(max_size=256),
    st.sampled_from([b"f", b"l"]),
)


@given(st.sampled_from(OVF_SAMPLES), st.lists(MEMBER, max_size=4), EDITS)
def test_ova_archives(
    sample: Path, members: list[tuple[str, bytes, bytes]], edits: list[tuple[int, int, bytes]]
) -> None:
    archive = _tar([("vm.ovf", sample.read_bytes(), b"f"), *members])
    for blob in (archive, mutate(archive, edits)):
        folder, path = _in_folder("vm.ova", blob)
        with folder:
            bounded(lambda p=path: open_ova(str(p)).inventory())

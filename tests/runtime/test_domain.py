"""VM instance spec → libvirt domain XML: the parsed XML; every domain translated here passes libvirt's schema
(``virt-xml-validate``), and libvirt (a real libvirtd) accepts them."""

from __future__ import annotations

import copy
import subprocess
import tempfile
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.domain import DomainOptions, PortForward, ResolvedVolume, UnsupportedSpecError, domain_xml, parse_quantity

libvirt = pytest.importorskip("libvirt")

QEMU_NS = "{http://libvirt.org/schemas/domain/qemu/1.0}"


def translate(spec: Any, volumes: Any, domain_options: DomainOptions) -> str:
    """``domain_xml``, and the result checked against libvirt's RelaxNG schema."""
    xml = domain_xml(spec, volumes, domain_options)
    assert_valid(xml)
    return xml


def assert_valid(xml: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".xml") as file:
        file.write(xml)
        file.flush()
        done = subprocess.run(["virt-xml-validate", file.name, "domain"], capture_output=True, text=True)
    assert done.returncode == 0, f"{done.stdout}{done.stderr}\n{xml}"


def converted_spec() -> dict[str, Any]:
    """A VM template spec as `migrator convert` writes it for a vSphere VM."""
    return {
        "terminationGracePeriodSeconds": 60,
        "domain": {
            "cpu": {"sockets": 2, "cores": 2, "threads": 1},
            "memory": {"guest": "1Gi"},
            "resources": {"requests": {"memory": "1Gi"}},
            "machine": {"type": "q35"},
            "firmware": {"uuid": "4216c9b8-1a2b-3c4d-5e6f-001122334455", "serial": "VMware-42 16 c9 b8"},
            "features": {"acpi": {}},
            "devices": {
                "disks": [
                    {"name": "root", "disk": {"bus": "virtio"}, "bootOrder": 1},
                    {"name": "data", "disk": {"bus": "sata"}, "cache": "none"},
                ],
                "interfaces": [
                    {"name": "default", "masquerade": {}, "model": "virtio", "macAddress": "00:50:56:9A:0B:01"}
                ],
            },
        },
        "networks": [{"name": "default", "pod": {}}],
        "volumes": [
            {"name": "root", "persistentVolumeClaim": {"claimName": "web01-root"}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "web01-data"}},
        ],
        "nodeSelector": {"kubernetes.io/os": "linux"},
    }


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ResolvedVolume]:
    root = tmp_path_factory.mktemp("images")
    volumes = {}
    for name in ("root", "data", "cd", "shared"):
        path = root / f"{name}.img"
        path.write_bytes(b"")
        with path.open("r+b") as image:
            image.truncate(1 << 20)
        volumes[name] = ResolvedVolume(path, "raw")
    return volumes


@pytest.fixture(scope="module")
def conn() -> Iterator[Any]:
    from runtime.launcher.libvirtd import ensure_libvirtd

    connection = libvirt.open(ensure_libvirtd())
    yield connection
    connection.close()


def accepted(conn: Any, xml: str) -> ET.Element:
    """libvirt defines the domain (its own validation) and forgets it again; returns libvirt's XML."""
    domain = conn.defineXML(xml)
    try:
        return ET.fromstring(domain.XMLDesc(0))
    finally:
        domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)


def options(**extra: Any) -> DomainOptions:
    return DomainOptions(name=f"test-domain-{uuid.uuid4().hex[:8]}", **extra)


def test_converted_vm_translates_and_libvirt_accepts_it(conn: Any, images: dict[str, ResolvedVolume]) -> None:
    xml = translate(converted_spec(), images, options(console_log=Path("/tmp/console.log")))
    root = ET.fromstring(xml)
    assert root.get("type") == "qemu"
    assert root.findtext("uuid") == "4216c9b8-1a2b-3c4d-5e6f-001122334455"
    assert root.find("memory").text == str(1024 * 1024) and root.find("memory").get("unit") == "KiB"
    assert root.findtext("vcpu") == "4"
    topology = root.find("cpu/topology")
    assert (topology.get("sockets"), topology.get("cores"), topology.get("threads")) == ("2", "2", "1")
    assert root.find("cpu").get("mode") == "maximum"  # TCG cannot pass the host CPU through
    assert root.find("os/type").get("machine") == "q35"
    assert root.find("os/loader") is None  # SeaBIOS
    assert root.find("sysinfo/system/entry[@name='serial']").text == "VMware-42 16 c9 b8"
    assert root.find("os/smbios").get("mode") == "sysinfo"
    assert root.find("features/acpi") is not None
    assert [root.findtext(tag) for tag in ("on_poweroff", "on_reboot", "on_crash")] == ["destroy", "restart", "destroy"]
    disks = root.findall("devices/disk")
    assert [(d.find("target").get("dev"), d.find("target").get("bus")) for d in disks] == [
        ("vda", "virtio"),
        ("sda", "sata"),
    ]
    assert disks[0].find("boot").get("order") == "1"
    assert disks[0].find("source").get("file") == str(images["root"].path)
    assert disks[1].find("driver").get("cache") == "none"
    nic = root.find("devices/interface")
    assert nic.get("type") == "user"
    assert nic.find("mac").get("address") == "00:50:56:9a:0b:01"
    assert nic.find("model").get("type") == "virtio"
    assert nic.find("rom").get("enabled") == "no"  # no bootOrder: no PXE ROM, as in KubeVirt
    serial = root.find("devices/serial")
    assert serial.get("type") == "pty" and serial.find("log").get("file") == "/tmp/console.log"
    assert root.find("devices/panic").get("model") == "isa"
    assert root.find("devices/graphics") is None
    assert root.find("devices/tpm") is None
    assert root.find("devices/controller[@type='usb']").get("model") == "none"

    defined = accepted(conn, xml)
    assert defined.find("devices/interface/mac").get("address") == "00:50:56:9a:0b:01"
    assert defined.find("devices/panic").get("model") == "isa"


def test_efi_secure_boot_with_tpm(conn: Any, images: dict[str, ResolvedVolume], tmp_path: Path) -> None:
    spec = converted_spec()
    spec["domain"]["firmware"]["bootloader"] = {"efi": {"secureBoot": True}}
    spec["domain"]["devices"]["tpm"] = {}
    nvram = tmp_path / "nvram.fd"
    xml = translate(spec, images, options(nvram_path=nvram, accelerator="kvm"))
    root = ET.fromstring(xml)
    assert root.get("type") == "kvm"
    assert root.find("cpu").get("mode") == "host-model"
    loader = root.find("os/loader")
    assert loader.text == "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
    assert (loader.get("secure"), loader.get("type"), loader.get("readonly")) == ("yes", "pflash", "yes")
    assert Path(loader.text).exists()
    assert root.find("os/nvram").text == str(nvram)
    assert root.find("os/nvram").get("template") == "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
    assert Path(root.find("os/nvram").get("template")).exists()
    assert root.find("features/smm").get("state") == "on"
    tpm = root.find("devices/tpm")
    assert tpm.get("model") == "tpm-crb"
    assert (tpm.find("backend").get("type"), tpm.find("backend").get("version")) == ("emulator", "2.0")
    accepted(conn, xml)


def test_efi_without_secure_boot(conn: Any, images: dict[str, ResolvedVolume]) -> None:
    spec = converted_spec()
    spec["domain"]["firmware"]["bootloader"] = {"efi": {"secureBoot": False}}
    root = ET.fromstring(translate(spec, images, options()))
    assert root.find("os/loader").text == "/usr/share/OVMF/OVMF_CODE_4M.fd"
    assert root.find("os/loader").get("secure") == "no"
    assert root.find("os/nvram").get("template") == "/usr/share/OVMF/OVMF_VARS_4M.fd"
    assert root.find("features/smm") is None
    accepted(conn, ET.tostring(root, encoding="unicode"))


def test_buses_cdrom_shareable_scsi_and_qcow2(conn: Any, images: dict[str, ResolvedVolume], tmp_path: Path) -> None:
    spec = converted_spec()
    spec["domain"]["devices"]["disks"] = [
        {"name": "root", "disk": {"bus": "scsi"}, "bootOrder": 2},
        {"name": "data", "disk": {"bus": "scsi"}, "cache": "writethrough", "serial": "DATA01"},
        {"name": "cd", "cdrom": {"bus": "sata"}, "bootOrder": 1},
        {"name": "shared", "disk": {"bus": "virtio"}, "shareable": True, "cache": "none"},
    ]
    spec["volumes"] += [
        {"name": "cd", "dataVolume": {"name": "iso"}},
        {"name": "shared", "persistentVolumeClaim": {"claimName": "quorum"}},
    ]
    qcow2 = dict(images, data=ResolvedVolume(images["data"].path, "qcow2"))
    root = ET.fromstring(translate(spec, qcow2, options()))
    disks = root.findall("devices/disk")
    assert [d.find("target").get("dev") for d in disks] == ["sda", "sdb", "sdc", "vda"]
    assert disks[1].find("driver").get("type") == "qcow2"
    assert disks[1].findtext("serial") == "DATA01"
    assert disks[2].get("device") == "cdrom" and disks[2].find("readonly") is not None
    assert disks[2].find("boot").get("order") == "1"
    assert disks[3].find("shareable") is not None
    controllers = root.findall("devices/controller[@type='scsi']")
    assert [c.get("model") for c in controllers] == ["virtio-scsi"]
    defined = accepted(conn, ET.tostring(root, encoding="unicode"))
    assert defined.find("devices/controller[@type='scsi']").get("model") == "virtio-scsi"


def test_empty_cdrom_drive(conn: Any, images: dict[str, ResolvedVolume]) -> None:
    spec = converted_spec()
    spec["domain"]["devices"]["disks"].append({"name": "cdrom0", "cdrom": {"bus": "sata", "readonly": True}})
    root = ET.fromstring(translate(spec, images, options()))
    cdrom = root.find("devices/disk[@device='cdrom']")
    assert cdrom.find("source") is None and cdrom.find("target").get("dev") == "sdb"
    accepted(conn, ET.tostring(root, encoding="unicode"))


def test_block_device_volume(images: dict[str, ResolvedVolume]) -> None:
    block = dict(images, root=ResolvedVolume(Path("/dev/sdz"), "raw", block=True))
    disk = ET.fromstring(translate(converted_spec(), block, options())).find("devices/disk")
    assert disk.get("type") == "block" and disk.find("source").get("dev") == "/dev/sdz"


def test_nic_models_and_port_forwards(conn: Any, images: dict[str, ResolvedVolume]) -> None:
    spec = converted_spec()
    spec["domain"]["devices"]["interfaces"] = [
        {
            "name": "default",
            "masquerade": {},
            "model": "e1000e",
            "macAddress": "00:50:56:00:00:01",
            "ports": [{"port": 22}],
        }
    ]
    root = ET.fromstring(translate(spec, images, options()))
    # libvirt 9.0 forwards no ports on user networking: the NIC goes to QEMU with slirp's hostfwd
    assert root.find("devices/interface") is None
    args = [arg.get("value") for arg in root.iter(f"{QEMU_NS}arg")]
    assert args == [
        "-netdev",
        "user,id=fwdnet0,hostfwd=tcp::22-:22",
        "-device",
        "e1000e,netdev=fwdnet0,mac=00:50:56:00:00:01,bus=pcie.0,addr=0x10,romfile=",
    ]
    forwarded = ET.fromstring(
        translate(
            spec, images, options(port_forwards={"default": [PortForward(2222, 22), PortForward(5353, 53, "udp")]})
        )
    )
    args = [arg.get("value") for arg in forwarded.iter(f"{QEMU_NS}arg")]
    assert args[1] == "user,id=fwdnet0,hostfwd=tcp::2222-:22,hostfwd=udp::5353-:53"
    defined = accepted(conn, ET.tostring(forwarded, encoding="unicode"))
    assert [arg.get("value") for arg in defined.iter(f"{QEMU_NS}arg")][1].startswith("user,id=fwdnet0")
    # no forwards asked: a plain libvirt user-mode NIC
    plain = ET.fromstring(translate(spec, images, options(port_forwards={})))
    assert plain.find("devices/interface").get("type") == "user"
    assert plain.find("devices/interface/model").get("type") == "e1000e"


def test_multus_bridge_only_where_a_bridge_exists(conn: Any, images: dict[str, ResolvedVolume]) -> None:
    spec = converted_spec()
    spec["networks"].append({"name": "storage", "multus": {"networkName": "default/vlan20"}})
    spec["domain"]["devices"]["interfaces"].append({"name": "storage", "bridge": {}, "macAddress": "00:50:56:00:00:02"})
    with pytest.raises(UnsupportedSpecError) as error:
        translate(spec, images, options())
    assert error.value.field == "spec.networks[1].multus.networkName"
    root = ET.fromstring(translate(spec, images, options(bridges={"default/vlan20": "br20"})))
    bridge = root.find("devices/interface[@type='bridge']")
    assert bridge.find("source").get("bridge") == "br20"
    assert bridge.find("mac").get("address") == "00:50:56:00:00:02"
    accepted(conn, ET.tostring(root, encoding="unicode"))


def test_default_pod_interface(images: dict[str, ResolvedVolume]) -> None:
    spec = converted_spec()
    spec["networks"] = []
    spec["domain"]["devices"]["interfaces"] = []
    nic = ET.fromstring(translate(spec, images, options())).find("devices/interface")
    assert nic.get("type") == "user" and nic.find("model").get("type") == "virtio"
    spec["domain"]["devices"]["autoattachPodInterface"] = False
    assert ET.fromstring(translate(spec, images, options())).find("devices/interface") is None


def test_memory_from_requests_and_quantities(images: dict[str, ResolvedVolume]) -> None:
    spec = converted_spec()
    del spec["domain"]["memory"]
    spec["domain"]["resources"] = {"requests": {"memory": "512M"}}
    root = ET.fromstring(translate(spec, images, options()))
    assert root.findtext("memory") == str(512 * 10**6 // 1024)
    assert parse_quantity("2Gi", "x") == 2 * 2**30
    assert parse_quantity(1048576, "x") == 1048576


def test_hyperv_clock_and_misc_devices(conn: Any, images: dict[str, ResolvedVolume]) -> None:
    spec = converted_spec()
    spec["domain"]["features"] = {
        "acpi": {},
        "apic": {},
        "hyperv": {"relaxed": {}, "vapic": {}, "spinlocks": {"spinlocks": 8191}},
    }
    spec["domain"]["clock"] = {"timezone": "Europe/Paris", "timer": {"hpet": {"present": False}}}
    spec["domain"]["devices"].update(
        {"rng": {}, "autoattachMemBalloon": False, "inputs": [{"name": "t", "type": "tablet", "bus": "usb"}]}
    )
    root = ET.fromstring(translate(spec, images, options()))
    assert root.find("features/hyperv/spinlocks").get("retries") == "8191"
    assert root.find("clock").get("timezone") == "Europe/Paris"
    assert root.find("clock/timer[@name='hpet']").get("present") == "no"
    assert root.find("devices/rng/backend").text == "/dev/urandom"
    assert root.find("devices/memballoon").get("model") == "none"
    assert root.find("devices/input").get("type") == "tablet"
    assert root.find("devices/controller[@type='usb']") is None  # the USB tablet needs libvirt's default controller
    accepted(conn, ET.tostring(root, encoding="unicode"))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            lambda s: s["domain"]["devices"].update(gpus=[{"name": "g", "deviceName": "nvidia"}]),
            "spec.domain.devices.gpus",
        ),
        (lambda s: s["domain"]["devices"].update(hostDevices=[{"name": "h"}]), "spec.domain.devices.hostDevices"),
        (lambda s: s["domain"]["devices"]["interfaces"][0].update(sriov={}), "spec.domain.devices.interfaces[0].sriov"),
        (
            lambda s: s["domain"]["devices"]["disks"][0].update(disk={"bus": "ide"}),
            "spec.domain.devices.disks[0].disk.bus",
        ),
        (lambda s: s["domain"]["devices"]["disks"][0].update(cache="unsafe"), "spec.domain.devices.disks[0].cache"),
        (lambda s: s["domain"].update(machine={"type": "pc-i440fx-7.2"}), "spec.domain.machine.type"),
        (lambda s: s["domain"]["memory"].update(hugepages={"pageSize": "2Mi"}), "spec.domain.memory.hugepages"),
        (lambda s: s["domain"]["cpu"].update(dedicatedCpuPlacement=True), "spec.domain.cpu.dedicatedCpuPlacement"),
        (lambda s: s["domain"].update(launchSecurity={"sev": {}}), "spec.domain.launchSecurity"),
        (lambda s: s.update(architecture="arm64"), "spec.architecture"),
        (
            lambda s: s["domain"]["devices"]["interfaces"][0].update(model="vmxnet3"),
            "spec.domain.devices.interfaces[0].model",
        ),
        (lambda s: s["domain"]["devices"]["disks"][0].update(name="nope"), "spec.domain.devices.disks[0].name"),
    ],
)
def test_what_cannot_be_honoured_names_the_field(images: dict[str, ResolvedVolume], change: Any, field: str) -> None:
    spec = copy.deepcopy(converted_spec())
    change(spec)
    with pytest.raises(UnsupportedSpecError) as error:
        translate(spec, images, options())
    assert error.value.field == field
    assert str(error.value).startswith(field + ":")


def test_unresolved_volume_is_an_error(images: dict[str, ResolvedVolume]) -> None:
    partial = {"root": images["root"]}
    with pytest.raises(UnsupportedSpecError) as error:
        translate(converted_spec(), partial, options())
    assert error.value.field == "spec.domain.devices.disks[1].name"


def test_run_as_the_launchers_user(images: dict[str, ResolvedVolume]) -> None:
    root = ET.fromstring(translate(converted_spec(), images, options(run_as=(0, 0))))
    seclabel = root.find("seclabel")
    assert (seclabel.get("model"), seclabel.get("relabel"), seclabel.findtext("label")) == ("dac", "no", "+0:+0")


def windows_spec() -> dict[str, Any]:
    """A Windows guest as KubeVirt's own examples write one (vm-windows, vmi-windows): Hyper-V enlightenments,
    the hypervclock, the legacy timers tuned, EFI with secure boot and a TPM."""
    spec = converted_spec()
    spec["domain"]["features"] = {
        "acpi": {},
        "apic": {},
        "smm": {},
        "hyperv": {
            "relaxed": {},
            "vapic": {},
            "spinlocks": {"spinlocks": 8191},
            "vpindex": {},
            "runtime": {},
            "synic": {},
            "stimer": {"direct": {}},
            "reset": {},
            "vendorid": {"vendorid": "KubeVirt"},
            "frequencies": {},
            "reenlightenment": {},
            "tlbflush": {},
            "ipi": {},
        },
    }
    spec["domain"]["clock"] = {
        "utc": {},
        "timer": {
            "hpet": {"present": False},
            "pit": {"tickPolicy": "delay"},
            "rtc": {"tickPolicy": "catchup"},
            "hyperv": {},
        },
    }
    spec["domain"]["firmware"]["bootloader"] = {"efi": {"secureBoot": True}}
    spec["domain"]["devices"]["tpm"] = {}
    spec["domain"]["devices"]["disks"][0]["disk"]["bus"] = "sata"
    spec["domain"]["devices"]["interfaces"][0]["model"] = "e1000e"
    return spec


def test_windows_guest_gets_hyperv_enlightenments_and_the_hypervclock(
    conn: Any, images: dict[str, ResolvedVolume], tmp_path: Path
) -> None:
    root = ET.fromstring(translate(windows_spec(), images, options(nvram_path=tmp_path / "nvram.fd")))
    hyperv = root.find("features/hyperv")
    assert hyperv is not None and hyperv.get("mode") == "custom"
    names = {child.tag for child in hyperv}
    assert {"relaxed", "vapic", "spinlocks", "vpindex", "synic", "stimer", "reset", "frequencies", "ipi"} <= names
    assert hyperv.find("vendor_id").get("value") == "KubeVirt"  # libvirt's name for KubeVirt's vendorid
    assert hyperv.find("stimer/direct").get("state") == "on"
    timers = {timer.get("name"): timer for timer in root.iter("timer")}
    assert set(timers) == {"hpet", "pit", "rtc", "hypervclock"}  # not "hyperv": libvirt's schema refuses that
    assert timers["hpet"].get("present") == "no"
    assert timers["pit"].get("tickpolicy") == "delay" and timers["rtc"].get("tickpolicy") == "catchup"
    assert root.find("features/smm").get("state") == "on"
    accepted(conn, ET.tostring(root, encoding="unicode"))


def test_kvm_timer_is_kvmclock(images: dict[str, ResolvedVolume]) -> None:
    spec = converted_spec()
    spec["domain"]["clock"] = {"utc": {"offsetSeconds": 3600}, "timer": {"kvm": {}, "rtc": {"track": "guest"}}}
    root = ET.fromstring(translate(spec, images, options(accelerator="kvm")))
    assert [t.get("name") for t in root.iter("timer")] == ["kvmclock", "rtc"]
    assert root.find("clock/timer[@name='rtc']").get("track") == "guest"
    assert root.find("clock").get("adjustment") == "3600"


@pytest.mark.parametrize(
    ("clock", "field"),
    [
        ({"timer": {"tsc": {}}}, "spec.domain.clock.timer.tsc"),
        ({"timer": {"kvm": {"tickPolicy": "delay"}}}, "spec.domain.clock.timer.kvm.tickPolicy"),
        ({"timer": {"pit": {"track": "wall"}}}, "spec.domain.clock.timer.pit.track"),
        ({"timer": {"rtc": {"frequency": 100}}}, "spec.domain.clock.timer.rtc.frequency"),
    ],
)
def test_timers_libvirt_cannot_take_are_refused(images: dict[str, ResolvedVolume], clock: Any, field: str) -> None:
    spec = converted_spec()
    spec["domain"]["clock"] = clock
    with pytest.raises(UnsupportedSpecError) as raised:
        domain_xml(spec, images, options())
    assert raised.value.field == field


def test_kubevirt_shaped_examples_all_pass_libvirts_schema(images: dict[str, ResolvedVolume]) -> None:
    """The shapes of KubeVirt's example instances (cirros, fedora, alpine-efi, windows): each translates to a
    domain libvirt's schema accepts."""
    examples = []
    minimal = {"domain": {"resources": {"requests": {"memory": "128Mi"}}, "devices": {}}}
    examples.append(minimal)
    fedora = copy.deepcopy(converted_spec())
    fedora["domain"]["devices"]["rng"] = {}
    fedora["domain"]["cpu"] = {"cores": 2, "model": "host-passthrough"}
    examples.append(fedora)
    efi = copy.deepcopy(converted_spec())
    efi["domain"]["firmware"]["bootloader"] = {"efi": {"secureBoot": False}}
    efi["domain"]["features"] = {"acpi": {"enabled": True}, "kvm": {"hidden": True}, "pvspinlock": {"enabled": False}}
    examples.append(efi)
    examples.append(windows_spec())
    for spec in examples:
        for accelerator in ("kvm", "tcg"):
            translate(spec, images, options(accelerator=accelerator))

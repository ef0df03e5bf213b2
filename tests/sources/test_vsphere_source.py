"""The vSphere source against a real vcsim through pyvmomi: inventory, TLS, credentials, operations."""

from __future__ import annotations

import hashlib
import re
import socket
import ssl
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyVim.connect import Connect, Disconnect, SmartConnect
from pyVim.task import WaitForTask
from pyVmomi import vim

from core.errors import InputError, NotFoundError, SourceError
from core.inventory import ControllerKind, Firmware, PowerState
from migrator import simulator
from migrator.sources import SourceOptions, open_source
from migrator.sources.vsphere import ToolsNotRunningError, VSphereSource

ENV = "MIGRATOR_TEST_VSPHERE_PASSWORD"


def options(**kw: Any) -> SourceOptions:
    return SourceOptions(**{"password_env": ENV, "prompt": False, **kw})


@pytest.fixture
def password_env(monkeypatch: pytest.MonkeyPatch, vcsim: simulator.Simulator) -> None:
    monkeypatch.setenv(ENV, vcsim.password)


def open_sim(sim: simulator.Simulator, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> VSphereSource:
    monkeypatch.setenv(ENV, sim.password)
    source = open_source(sim.source_url(kw.pop("datacenter", None)), options(insecure=True, **kw))
    assert isinstance(source, VSphereSource)
    return source


@pytest.fixture
def source(vcsim: simulator.Simulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[VSphereSource]:
    src = open_sim(vcsim, monkeypatch)
    try:
        yield src
    finally:
        src.close()


def pyvmomi_session(sim: simulator.Simulator, version: str | None = None) -> vim.ServiceInstance:
    if version:  # speak a newer API than the 6.5 vcsim announces (VirtualTPM needs 6.7)
        return Connect(
            host=sim.host,
            port=sim.port,
            user=sim.username,
            pwd=sim.password,
            version=version,
            disableSslCertValidation=True,
        )
    return SmartConnect(
        host=sim.host, port=sim.port, user=sim.username, pwd=sim.password, disableSslCertValidation=True
    )


def find(si: vim.ServiceInstance, kind: type, name: str) -> Any:
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [kind], True)
    try:
        return next(o for o in view.view if o.name == name)
    finally:
        view.DestroyView()


def sim_sha256(sim: simulator.Simulator) -> str:
    pem = ssl.get_server_certificate((sim.host, sim.port))
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


# -- inventory --------------------------------------------------------------------------------


def test_inventory_matches_what_pyvmomi_reads_per_vm(source: VSphereSource, vcsim: simulator.Simulator) -> None:
    inventory = source.inventory()
    names = [vm.name for vm in inventory.vms]
    assert names == ["DC0_C0_RP0_VM0", "DC0_C0_RP0_VM1", "DC0_H0_VM0", "DC0_H0_VM1"]
    assert inventory.source_url == vcsim.source_url()
    si = pyvmomi_session(vcsim)
    try:
        about = si.RetrieveContent().about
        assert inventory.about["instance_uuid"] == about.instanceUuid
        assert inventory.about["api_version"] == about.apiVersion
        for vm in inventory.vms:
            truth = find(si, vim.VirtualMachine, vm.name)
            disks = [d for d in truth.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]
            nics = [d for d in truth.config.hardware.device if isinstance(d, vim.vm.device.VirtualEthernetCard)]
            assert [d.backing.fileName for d in disks] == [d.backing_file for d in vm.disks]
            assert [d.capacityInKB * 1024 for d in disks] == [d.capacity_bytes for d in vm.disks]
            assert [n.macAddress for n in nics] == [n.mac for n in vm.nics]
            assert vm.moref == truth._moId
            assert vm.bios_uuid == truth.config.uuid and vm.instance_uuid == truth.config.instanceUuid
            assert vm.host == truth.runtime.host.name
            assert vm.memory_mib == truth.config.hardware.memoryMB
    finally:
        Disconnect(si)
    for vm in inventory.vms:
        assert vm.source == "vsphere"
        assert vm.datacenter == "DC0" and vm.folder == "/DC0/vm"
        assert vm.power_state is PowerState.ON
        assert vm.cluster is not None if "_C0_" in vm.name else vm.cluster is None
        disk = vm.disks[0]
        assert disk.datastore == "LocalDS_0" and disk.backing_file == f"[LocalDS_0] {vm.name}/disk1.vmdk"
        assert disk.controller.kind is ControllerKind.SCSI and disk.controller.model == "pvscsi"
        assert disk.unit_number == 0 and disk.thin is True and disk.allocated_bytes == 0
        assert vm.nics[0].model == "e1000" and vm.nics[0].network == "DC0_DVPG0"
        assert vm.tools_status == "toolsNotInstalled" and not vm.is_template
    # Plain data only: what the plan file dumps (pyvmomi's str-subclass enums would not dump).
    yaml.safe_dump([vm.to_dict() for vm in inventory.vms])
    cluster_vm = inventory.by_name("DC0_C0_RP0_VM0")
    assert cluster_vm is not None and cluster_vm.cluster is not None
    assert cluster_vm.cluster.name == "DC0_C0" and cluster_vm.cluster.drs_enabled is True


def test_vm_inventory_and_unknown_names(source: VSphereSource, vcsim: simulator.Simulator) -> None:
    one = source.vm_inventory("DC0_H0_VM1")
    assert one == source.inventory().by_name("DC0_H0_VM1")
    with pytest.raises(NotFoundError, match="VM 'nope' not found"):
        source.vm_inventory("nope")
    with pytest.raises(NotFoundError, match="datacenter 'DCX' not found .*DC0"):
        open_source(vcsim.source_url("DCX"), options(insecure=True))


def test_datacenter_in_location_scopes_the_inventory(
    vcsim: simulator.Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = open_sim(vcsim, monkeypatch, datacenter="DC0")
    try:
        assert len(src.inventory().vms) == 4
        assert src.url.endswith("/DC0")
    finally:
        src.close()


def test_reconfigured_vm_shows_up(fresh_vcsim: simulator.Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    si = pyvmomi_session(fresh_vcsim, version="vim.version.version12")
    try:
        vm = find(si, vim.VirtualMachine, "DC0_C0_RP0_VM0")
        network = find(si, vim.Network, "VM Network")
        nic_backing = vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(deviceName="VM Network", network=network)
        spec = vim.vm.ConfigSpec(
            numCPUs=4,
            numCoresPerSocket=2,
            memoryMB=2048,
            firmware="efi",
            bootOptions=vim.vm.BootOptions(efiSecureBootEnabled=True),
            changeTrackingEnabled=True,
            cpuHotAddEnabled=True,
            memoryHotAddEnabled=True,
            cpuAffinity=vim.vm.AffinityInfo(affinitySet=[0, 1]),
            annotation="prod db",
            extraConfig=[
                vim.option.OptionValue(key="disk.EnableUUID", value="TRUE"),
                vim.option.OptionValue(key="numa.nodeAffinity", value="0,1"),
                vim.option.OptionValue(key="SET.guest.hostName", value="db01.example.com"),
            ],
            deviceChange=[
                vim.vm.device.VirtualDeviceSpec(operation="add", device=vim.vm.device.VirtualTPM(key=-11)),
                vim.vm.device.VirtualDeviceSpec(
                    operation="add",
                    device=vim.vm.device.VirtualVmxnet3(
                        key=-12, backing=nic_backing, macAddress="00:50:56:01:02:03", addressType="manual"
                    ),
                ),
                vim.vm.device.VirtualDeviceSpec(
                    operation="add", device=vim.vm.device.VirtualUSBXHCIController(key=-13)
                ),
            ],
        )
        WaitForTask(vm.ReconfigVM_Task(spec=spec))
        WaitForTask(vm.CreateSnapshot_Task(name="before-upgrade", memory=False, quiesce=False))
        WaitForTask(vm.CreateSnapshot_Task(name="after-upgrade", memory=False, quiesce=False))
        cluster = find(si, vim.ClusterComputeResource, "DC0_C0")
        hosts = [h for h in cluster.host]
        cluster_spec = vim.cluster.ConfigSpecEx(
            groupSpec=[
                vim.cluster.GroupSpec(operation="add", info=vim.cluster.VmGroup(name="pinned", vm=[vm])),
                vim.cluster.GroupSpec(operation="add", info=vim.cluster.HostGroup(name="h0", host=hosts[:1])),
            ],
            rulesSpec=[
                vim.cluster.RuleSpec(
                    operation="add",
                    info=vim.cluster.VmHostRuleInfo(
                        name="pin", enabled=True, vmGroupName="pinned", affineHostGroupName="h0"
                    ),
                )
            ],
            drsVmConfigSpec=[
                vim.cluster.DrsVmConfigSpec(
                    operation="add", info=vim.cluster.DrsVmConfigInfo(key=vm, enabled=True, behavior="manual")
                )
            ],
        )
        WaitForTask(cluster.ReconfigureComputeResource_Task(spec=cluster_spec, modify=True))
    finally:
        Disconnect(si)

    src = open_sim(fresh_vcsim, monkeypatch)
    try:
        got = src.vm_inventory("DC0_C0_RP0_VM0")
        assert got == src.inventory().by_name("DC0_C0_RP0_VM0")
    finally:
        src.close()
    assert (got.cpu.sockets, got.cpu.cores_per_socket, got.cpu.vcpus) == (2, 2, 4)
    assert got.cpu.hot_add and got.memory_hot_add and got.cpu.affinity == [0, 1] and got.cpu.numa_affinity == [0, 1]
    assert got.memory_mib == 2048
    assert got.firmware is Firmware.EFI and got.secure_boot is True
    # vTPM: vcsim announces API 6.5, where pyvmomi's own deserializer would narrow a VirtualTPM
    # to a plain VirtualDevice; the fast decoder keeps the type the server sent.
    assert got.vtpm is True and got.cbt_enabled is True
    assert got.disk_enable_uuid is True and got.hostname == "db01.example.com"
    assert got.annotation == "prod db"
    assert [s.name for s in got.snapshots] == ["before-upgrade", "after-upgrade"]
    assert got.snapshots[0].children == 1
    assert got.usb_controllers == ["usb_xhci"]
    vmxnet3 = next(n for n in got.nics if n.model == "vmxnet3")
    assert vmxnet3.mac == "00:50:56:01:02:03" and vmxnet3.network == "VM Network"
    assert got.host_affinity is True
    assert got.cluster is not None and got.cluster.drs_behavior == "manual"


# -- one retrieval ----------------------------------------------------------------------------


class CountingConnection:
    """Wraps one pooled HTTP connection of the session: records the SOAP method of every request."""

    def __init__(self, conn: Any, calls: Counter[str]) -> None:
        self._conn = conn
        self._calls = calls

    def request(self, method: str, url: str, body: Any = None, headers: Any = None, **kw: Any) -> Any:
        text = body.decode() if isinstance(body, bytes) else str(body)
        found = re.search(r"Body>\s*<(\w+)", text)
        self._calls[found.group(1) if found else "?"] += 1
        return self._conn.request(method, url, body, headers, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def test_inventory_is_one_paged_retrieval_whatever_the_vm_count(monkeypatch: pytest.MonkeyPatch) -> None:
    with simulator.start(vms_per_pool=20, clusters=2, hosts_per_cluster=1, standalone_hosts=1) as sim:
        src = open_sim(sim, monkeypatch)
        try:
            calls: Counter[str] = Counter()
            stub = src.service_instance._stub
            get_connection = stub.GetConnection

            def counting_connection() -> Any:
                conn = get_connection()  # pooled connections come back already wrapped
                return conn if isinstance(conn, CountingConnection) else CountingConnection(conn, calls)

            monkeypatch.setattr(stub, "GetConnection", counting_connection)
            src.page_size = 25
            inventory = src.inventory()
            during = Counter(calls)
            # The same answer as pyvmomi's own deserializer gives (the fast path is only faster).
            src.property_collector = src.content.propertyCollector
            assert src.inventory() == inventory
        finally:
            src.close()
    assert len(inventory.vms) == 60
    assert all(vm.disks and vm.nics and vm.host for vm in inventory.vms)
    # Exactly one retrieval and no call per VM of any kind, counted on the wire. (govmomi 0.24's
    # vcsim ignores maxObjects and answers in one page; a real vCenter pages and the loop follows
    # ContinueRetrievePropertiesEx tokens, still without any per-VM call.)
    assert during["RetrievePropertiesEx"] == 1, during
    allowed = {"CreateContainerView", "RetrievePropertiesEx", "ContinueRetrievePropertiesEx", "DestroyView"}
    assert set(during) <= allowed, during
    assert sum(during.values()) <= 3 + (len(inventory.vms) * 2) // 25 + 2


# -- credentials ------------------------------------------------------------------------------


def test_password_from_file(vcsim: simulator.Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    secret = tmp_path / "pw"
    secret.write_text(vcsim.password + "\n")
    src = open_source(vcsim.source_url(), options(insecure=True, password_file=str(secret)))
    try:
        assert len(src.inventory().vms) == 4
    finally:
        src.close()


def test_no_password_is_one_clear_line(vcsim: simulator.Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(SourceError, match=f"no password for .*{ENV}.*--password-file"):
        open_source(vcsim.source_url(), options(insecure=True))
    with pytest.raises(InputError, match="cannot read password file"):
        open_source(vcsim.source_url(), options(insecure=True, password_file="/nonexistent/pw"))


def test_wrong_password_is_one_line_without_the_password(
    vcsim: simulator.Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, "Sup3r-Wr0ng-Secret")
    with pytest.raises(SourceError) as caught:
        open_source(vcsim.source_url(), options(insecure=True))
    message = str(caught.value)
    assert message.startswith(f"login failed for {vcsim.username} on 127.0.0.1:{vcsim.port}")
    assert "Sup3r-Wr0ng-Secret" not in message and "\n" not in message


def test_password_in_url_is_refused(vcsim: simulator.Simulator) -> None:
    with pytest.raises(InputError, match="do not put the password"):
        open_source(f"vsphere://u:secret@{vcsim.host}:{vcsim.port}", options())


# -- TLS --------------------------------------------------------------------------------------


def test_self_signed_certificate_is_refused_by_default(vcsim: simulator.Simulator, password_env: None) -> None:
    with pytest.raises(SourceError) as caught:
        open_source(vcsim.source_url(), options())
    message = str(caught.value)
    assert message.startswith(f"certificate verify failed for 127.0.0.1:{vcsim.port}")
    assert "--thumbprint" in message and "--insecure" in message and "\n" not in message


def test_thumbprint_pins_the_certificate(vcsim: simulator.Simulator, password_env: None) -> None:
    sha256 = sim_sha256(vcsim)
    colons = ":".join(sha256[i : i + 2] for i in range(0, 64, 2)).upper()
    src = open_source(vcsim.source_url(), options(thumbprint=colons))
    try:
        assert len(src.inventory().vms) == 4
        context = src.ssl_context()
        assert context is not None and context.verify_mode == ssl.CERT_REQUIRED
    finally:
        src.close()
    pem = ssl.get_server_certificate((vcsim.host, vcsim.port))
    sha1 = hashlib.sha1(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()
    open_source(vcsim.source_url(), options(thumbprint=sha1)).close()
    wrong = "ab" * 32
    with pytest.raises(
        SourceError, match=f"certificate thumbprint mismatch: expected {'AB:' * 31}AB, server presented"
    ):
        open_source(vcsim.source_url(), options(thumbprint=wrong))
    with pytest.raises(InputError, match="bad --thumbprint"):
        open_source(vcsim.source_url(), options(thumbprint="xyz"))


def test_insecure_is_an_explicit_choice(source: VSphereSource) -> None:
    context = source.ssl_context()
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname
    assert source.inventory().vms


def test_unreachable_port_is_one_line(password_env: None) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SourceError, match=f"^cannot reach 127.0.0.1:{port}: [^\n]+$"):
        open_source(f"vsphere://someone@127.0.0.1:{port}", options())
    with pytest.raises(SourceError, match="^cannot reach"):
        open_source("vsphere://someone@no-such-host.invalid", options(insecure=True))


# -- disk engine access -----------------------------------------------------------------------


def test_datastore_file_url_headers_and_context(source: VSphereSource, vcsim: simulator.Simulator) -> None:
    url = source.datastore_file_url("[LocalDS_0] my vm/disk 1#.vmdk")
    assert url == (f"https://127.0.0.1:{vcsim.port}/folder/my%20vm/disk%201%23.vmdk?dcPath=DC0&dsName=LocalDS_0")
    cookie = source.http_headers()["Cookie"]
    assert cookie.startswith("vmware_soap_session=") and ";" not in cookie
    with pytest.raises(InputError):
        source.datastore_file_url("no brackets")
    with pytest.raises(NotFoundError, match="datastore 'Nope'"):
        source.datastore_file_url("[Nope] x.vmdk")


# -- cutover operations -----------------------------------------------------------------------


def test_power_shutdown_and_mark_migrated(fresh_vcsim: simulator.Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    src = open_sim(fresh_vcsim, monkeypatch)
    try:
        name = "DC0_H0_VM0"
        assert src.power_state(name) == "poweredOn"
        with pytest.raises(ToolsNotRunningError, match="VMware Tools are not running"):
            src.shutdown_guest(name)
        assert src.power_state(name) == "poweredOn"
        src.power_off(name)
        assert src.power_state(name) == "poweredOff"
        src.power_off(name)  # already off: nothing to do
        src.power_on(name)
        assert src.vm_inventory(name).power_state is PowerState.ON
        # Tools running (the simulator's SET.* extraConfig sets guest properties): guest shutdown works.
        vm = src.find_vm(name)
        tools = vim.option.OptionValue(key="SET.guest.toolsRunningStatus", value="guestToolsRunning")
        WaitForTask(vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(extraConfig=[tools])))
        src.shutdown_guest(name, timeout=30)
        assert src.power_state(name) == "poweredOff"

        assert src.mark_migrated(name, "migrated to kubevirt:ns1/vm0") is True
        src.mark_migrated(name, "migrated to kubevirt:ns1/vm0")  # idempotent
        assert src.vm_inventory(name).annotation == "migrated to kubevirt:ns1/vm0"
        fields = {f.key: f.name for f in src.content.customFieldsManager.field}
        values = {fields[v.key]: v.value for v in src.find_vm(name).customValue}
        assert values["migrator.target"] == "migrated to kubevirt:ns1/vm0"
        with pytest.raises(NotFoundError):
            src.power_off("nope")
    finally:
        src.close()

"""OVF as real exporters write it: the 0.9 dialect, nested vApps, a system without a memory item."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.inventory import ControllerKind
from migrator.sources import open_source
from tests.planning.cli import assert_one_line_error, run_migrator

GIB = 2**30

# As ESX 3.5 / ovftool 1.x wrote it: the VMware 0.9 namespace, generic <Section xsi:type=...>,
# <Content> for the system, rasd:InstanceId and rasd:Caption, "/disk/" host resources.
OVF_09 = """<?xml version="1.0" encoding="UTF-8"?>
<Envelope ovf:version="0.9" xml:lang="en-US"
    xmlns="http://www.vmware.com/schema/ovf/1/envelope"
    xmlns:ovf="http://www.vmware.com/schema/ovf/1/envelope"
    xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
    xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:href="legacy-disk1.vmdk" ovf:id="file1" ovf:size="1048576"/>
  </References>
  <Section xsi:type="ovf:DiskSection_Type">
    <Info>List of the virtual disks used in the package</Info>
    <Disk ovf:capacity="8589934592" ovf:diskId="vmdisk1" ovf:fileRef="file1"
          ovf:format="http://www.vmware.com/specifications/vmdk.html#compressed"/>
  </Section>
  <Section xsi:type="ovf:NetworkSection_Type">
    <Info>The list of logical networks</Info>
    <Network ovf:name="VM Network"><Description>The VM Network network</Description></Network>
  </Section>
  <Content ovf:id="legacy-vm" xsi:type="ovf:VirtualSystem_Type">
    <Info>A virtual machine</Info>
    <Section ovf:id="36" xsi:type="ovf:OperatingSystemSection_Type">
      <Info>The kind of installed guest operating system</Info>
    </Section>
    <Section xsi:type="ovf:VirtualHardwareSection_Type">
      <Info>Virtual hardware requirements for a virtual machine</Info>
      <System>
        <vssd:InstanceId>0</vssd:InstanceId>
        <vssd:VirtualSystemIdentifier>legacy-vm</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-04</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:Caption>2 virtual CPU(s)</rasd:Caption>
        <rasd:InstanceId>1</rasd:InstanceId>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:AllocationUnits>MegaHertz</rasd:AllocationUnits>
        <rasd:VirtualQuantity>2</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Caption>512 MB of memory</rasd:Caption>
        <rasd:InstanceId>2</rasd:InstanceId>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits>
        <rasd:VirtualQuantity>512</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Caption>SCSI Controller 0  - LSI Logic</rasd:Caption>
        <rasd:InstanceId>3</rasd:InstanceId>
        <rasd:ResourceType>6</rasd:ResourceType>
        <rasd:ResourceSubType>LsiLogic</rasd:ResourceSubType>
        <rasd:BusNumber>0</rasd:BusNumber>
      </Item>
      <Item>
        <rasd:Caption>IDE Controller 0</rasd:Caption>
        <rasd:InstanceId>4</rasd:InstanceId>
        <rasd:ResourceType>5</rasd:ResourceType>
        <rasd:BusNumber>0</rasd:BusNumber>
      </Item>
      <Item>
        <rasd:Caption>Harddisk 1</rasd:Caption>
        <rasd:InstanceId>5</rasd:InstanceId>
        <rasd:ResourceType>17</rasd:ResourceType>
        <rasd:HostResource>/disk/vmdisk1</rasd:HostResource>
        <rasd:Parent>3</rasd:Parent>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
      </Item>
      <Item>
        <rasd:Caption>CD-ROM 1</rasd:Caption>
        <rasd:InstanceId>6</rasd:InstanceId>
        <rasd:ResourceType>15</rasd:ResourceType>
        <rasd:Parent>4</rasd:Parent>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
      </Item>
      <Item>
        <rasd:Caption>Ethernet adapter on 'VM Network'</rasd:Caption>
        <rasd:InstanceId>7</rasd:InstanceId>
        <rasd:ResourceType>10</rasd:ResourceType>
        <rasd:ResourceSubType>PCNet32</rasd:ResourceSubType>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>VM Network</rasd:Connection>
        <rasd:AddressOnParent>7</rasd:AddressOnParent>
      </Item>
    </Section>
  </Content>
</Envelope>
"""

NESTED = """<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
    xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
  <References/>
  <VirtualSystemCollection ovf:id="outer">
    <Info>A vApp</Info>
    <Name>outer</Name>
    <VirtualSystem ovf:id="front"><Info>vm</Info><Name>front</Name>{hw}</VirtualSystem>
    <VirtualSystemCollection ovf:id="inner">
      <Info>A nested vApp</Info>
      <Name>inner</Name>
      <VirtualSystem ovf:id="db"><Info>vm</Info><Name>db</Name>{hw}</VirtualSystem>
      <VirtualSystemCollection ovf:id="innermost">
        <Info>deeper</Info>
        <VirtualSystem ovf:id="cache"><Info>vm</Info><Name>cache</Name>{hw}</VirtualSystem>
      </VirtualSystemCollection>
    </VirtualSystemCollection>
  </VirtualSystemCollection>
</Envelope>
"""
HARDWARE = """<VirtualHardwareSection><Info>hw</Info>
  <Item><rasd:ElementName>cpu</rasd:ElementName><rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>1</rasd:VirtualQuantity></Item>
  <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:ElementName>mem</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>1024</rasd:VirtualQuantity></Item>
</VirtualHardwareSection>"""
NO_MEMORY = """<VirtualHardwareSection><Info>hw</Info>
  <Item><rasd:ElementName>cpu</rasd:ElementName><rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>
</VirtualHardwareSection>"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_ovf_09_dialect_plans_its_vm(tmp_path: Path) -> None:
    descriptor = write(tmp_path, "legacy.ovf", OVF_09)
    (tmp_path / "legacy-disk1.vmdk").write_bytes(b"\0" * 1024)
    (vm,) = open_source(f"ovf:{descriptor}").inventory().vms
    assert vm.name == "legacy-vm"
    assert vm.cpu.vcpus == 2 and vm.memory_mib == 512
    (disk,) = vm.disks
    assert disk.capacity_bytes == 8 * GIB and disk.controller.kind is ControllerKind.SCSI
    assert disk.controller.model == "lsilogic" and disk.label == "Harddisk 1"
    assert disk.backing_file == str(tmp_path / "legacy-disk1.vmdk")
    assert [c.controller.kind for c in vm.cdroms] == [ControllerKind.IDE]
    assert [(n.model, n.network) for n in vm.nics] == [("pcnet32", "VM Network")]
    result = run_migrator("plan", "--source", f"ovf:{descriptor}", "--output-file", "-", "-o", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"source_name": "legacy-vm"' in result.stdout


def test_nested_collections_plan_every_vm(tmp_path: Path) -> None:
    descriptor = write(tmp_path, "nested.ovf", NESTED.format(hw=HARDWARE))
    vms = open_source(f"ovf:{descriptor}").inventory().vms
    assert [(vm.name, vm.folder) for vm in vms] == [
        ("front", "/outer"),
        ("db", "/outer/inner"),
        ("cache", "/outer/inner/innermost"),
    ]
    assert all(vm.memory_mib == 1024 for vm in vms)


def test_system_without_memory_is_listed_and_blocked(tmp_path: Path) -> None:
    text = NESTED.format(hw=HARDWARE).replace(f"<Name>db</Name>{HARDWARE}", f"<Name>db</Name>{NO_MEMORY}")
    descriptor = write(tmp_path, "nomem.ovf", text)
    result = run_migrator("plan", "--source", f"ovf:{descriptor}", "--output-file", "-", "-o", "json", cwd=tmp_path)
    assert result.returncode == 3, result.stderr  # blocked, not refused
    import json

    vms = {vm["source_name"]: vm for vm in json.loads(result.stdout)["vms"]}
    assert set(vms) == {"front", "db", "cache"}
    assert [c["id"] for c in vms["db"]["concerns"] if c["severity"] == "Critical"] == ["invalid-memory"]
    assert not [c for c in vms["front"]["concerns"] if c["severity"] == "Critical"]


def test_system_without_hardware_section_is_listed_and_blocked(tmp_path: Path) -> None:
    text = NESTED.format(hw=HARDWARE).replace(f"<Name>cache</Name>{HARDWARE}", "<Name>cache</Name>")
    vms = {vm.name: vm for vm in open_source(f"ovf:{write(tmp_path, 'nohw.ovf', text)}").inventory().vms}
    assert vms["cache"].memory_mib == 0 and vms["front"].memory_mib == 1024


@pytest.mark.parametrize(
    "body, says",
    [
        ("<Envelope xmlns='http://schemas.dmtf.org/ovf/envelope/1'><References/></Envelope>", "no VirtualSystem"),
        ("<Project/>", "not an OVF descriptor"),
    ],
)
def test_a_file_describing_no_vm_is_refused_with_one_line(tmp_path: Path, body: str, says: str) -> None:
    descriptor = write(tmp_path, "empty.ovf", body)
    result = run_migrator("plan", "--source", f"ovf:{descriptor}", "--output-file", "-", cwd=tmp_path)
    assert result.returncode == 2
    assert_one_line_error(result, says)

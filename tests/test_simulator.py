"""The vcsim harness starts a real simulator that pyvmomi talks to."""

from __future__ import annotations

import ssl

import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from migrator import simulator


def test_simulator_serves_a_vcenter_pyvmomi_can_read(vcsim: simulator.Simulator) -> None:
    si = SmartConnect(
        host=vcsim.host, port=vcsim.port, user=vcsim.username, pwd=vcsim.password, disableSslCertValidation=True
    )
    try:
        content = si.RetrieveContent()
        assert content.about.apiType == "VirtualCenter"
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
        # defaults: 2 VMs in the cluster's root pool + 2 on the standalone host
        assert len(view.view) == 4
    finally:
        Disconnect(si)


def test_simulator_rejects_wrong_password(vcsim: simulator.Simulator) -> None:
    with pytest.raises(vim.fault.InvalidLogin):
        SmartConnect(host=vcsim.host, port=vcsim.port, user=vcsim.username, pwd="wrong", disableSslCertValidation=True)


def test_simulator_certificate_is_not_trusted_by_a_verifying_client(vcsim: simulator.Simulator) -> None:
    # pyvmomi skips verification for loopback hosts unless given a context: always pass one.
    with pytest.raises(ssl.SSLError):
        SmartConnect(
            host=vcsim.host,
            port=vcsim.port,
            user=vcsim.username,
            pwd=vcsim.password,
            sslContext=ssl.create_default_context(),
        )

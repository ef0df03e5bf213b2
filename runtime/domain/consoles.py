"""Consoles: the serial console, logged from the first byte by virtlogd (KubeVirt's converter: serial, console)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from runtime.domain.elements import sub
from runtime.domain.model import DomainOptions


def serial(devices: ET.Element, options: DomainOptions) -> None:
    port = sub(devices, "serial", type="pty")
    if options.console_log is not None:
        # virtlogd writes everything the guest prints, from the first byte, whoever is attached
        sub(port, "log", file=str(options.console_log), append="off")
    target = sub(port, "target", type="isa-serial", port="0")
    sub(target, "model", name="isa-serial")
    console = sub(devices, "console", type="pty")
    sub(console, "target", type="serial", port="0")

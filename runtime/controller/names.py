"""Names shared by the controller, the handler, the CLI and the tests (KubeVirt's where it has one)."""

from __future__ import annotations

GROUP = "kubevirt.io"
VERSION = "v1"
VMS = "virtualmachines"
VMIS = "virtualmachineinstances"

# Labels KubeVirt puts on launcher pods and instances.
LABEL_APP = "kubevirt.io"  # value "virt-launcher" on pods
LABEL_CREATED_BY = "kubevirt.io/created-by"  # the instance's uid
LABEL_VM_NAME = "vm.kubevirt.io/name"
LABEL_DOMAIN = "kubevirt.io/domain"
LABEL_NODE = "kubevirt.io/nodeName"  # on instances: the handler's watch selects by it

# The instance's finalizer: the pod and the domain are gone before the instance disappears.
VMI_FINALIZER = "migrator.io/vmi-cleanup"

# Start/stop/restart requests. KubeVirt takes them through the subresources virtualmachines/start|stop|restart
# of its aggregated API server; this runtime has no aggregated API, so requests are annotations holding the
# request time (RFC 3339). They are level-triggered: a request applies to instances created before it.
ANNOTATION_START = "migrator.io/start-requested"
ANNOTATION_STOP = "migrator.io/stop-requested"
ANNOTATION_RESTART = "migrator.io/restart-requested"
# On an instance: "true" pauses the guest, anything else (or absent) runs it. The handler carries it out.
ANNOTATION_PAUSE = "migrator.io/paused"

LAUNCHER_CONTAINER = "compute"
DISKS_DIR = "/var/run/kubevirt-private/vmi-disks"
SOCKETS_DIR = "/var/run/migrator/sockets"
SOCKETS_VOLUME = "migrator-sockets"


def state_dir_name(namespace: str, name: str, uid: str) -> str:
    """The launcher's state dir under the shared sockets hostPath: one per instance (the uid's first 8 hex
    digits: a restarted VM's new instance never meets the old launcher's files; short, for the 108-byte
    limit of unix socket paths)."""
    return f"{namespace}_{name}_{uid.replace('-', '')[:8]}"

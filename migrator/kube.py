"""How the CLI reaches a Kubernetes cluster: which kubeconfig and context, and what "unreachable" looks like.

Every cluster command takes ``--kubeconfig``, ``--context`` and ``-n/--namespace`` (kubectl's
flags) and builds its client here, so a missing kubeconfig and an unreachable API server are
one line each, naming the file or the server, with their own exit codes.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import InputError, TargetError, UnreachableError

log = logging.getLogger(__name__)

# urllib3 retries a refused connection 3 times by default, logging a warning each time: once is enough.
RETRIES = 1


class ClusterUnreachableError(UnreachableError, TargetError):
    """The API server did not answer (refused, DNS, TLS, timeout): exit 5, "try again later"."""


@dataclass(frozen=True)
class KubeAccess:
    kubeconfig: str | None = None  # default: $KUBECONFIG, else ~/.kube/config
    context: str | None = None  # default: the kubeconfig's current-context

    @property
    def config_file(self) -> str:
        return self.kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")


def api_client(access: KubeAccess) -> Any:
    """A kubernetes ApiClient for ``access``; InputError when the kubeconfig is missing or has no such context."""
    from kubernetes import config
    from kubernetes.config.config_exception import ConfigException

    path = access.config_file
    if not Path(path).is_file():
        raise InputError(f"no kubeconfig at {path}: give --kubeconfig FILE or set KUBECONFIG")
    configuration = _configuration()
    try:
        config.load_kube_config(config_file=path, context=access.context, client_configuration=configuration)
    except (ConfigException, OSError, ValueError) as error:
        raise InputError(f"cannot load the kubeconfig {path}: {error}") from None
    configuration.retries = RETRIES
    log.debug("kubernetes: %s, context %s, API server %s", path, access.context or "(current)", configuration.host)
    from kubernetes.client import ApiClient

    return ApiClient(configuration)


def _configuration() -> Any:
    from kubernetes.client import Configuration

    return Configuration()


def server_of(client: Any) -> str:
    return str(getattr(client, "configuration", None) and client.configuration.host or "the API server")


def unreachable(client: Any, error: BaseException) -> ClusterUnreachableError | None:
    """The one-line error for a connection-level failure (refused, DNS, TLS, timeout); None for anything else."""
    import urllib3.exceptions

    reason: BaseException | None = error
    if isinstance(error, urllib3.exceptions.MaxRetryError):
        reason = error.reason or error
    if not isinstance(reason, urllib3.exceptions.HTTPError | OSError):
        return None
    return ClusterUnreachableError(f"cannot reach the cluster's API server {server_of(client)}: {describe(reason)}")


def describe(reason: BaseException) -> str:
    """``Connection refused`` rather than urllib3's ``HTTPConnection(host=…, port=…): Failed to establish…``."""
    text = str(reason)
    text = re.sub(r"^(<[^>]*>|\w*Connection(Pool)?\([^)]*\)): ", "", text)
    for prefix in ("Failed to establish a new connection: ", "[Errno 111] ", "[Errno -2] ", "[Errno -3] "):
        text = text.replace(prefix, "")
    return text.strip() or type(reason).__name__


def check_reachable(client: Any) -> str:
    """Ask the API server for its version (cheap, no RBAC needed); returns it, or raises ClusterUnreachableError."""
    from kubernetes.client import ApiException, VersionApi

    try:
        info = VersionApi(client).get_code(_request_timeout=15)
    except ApiException as error:
        if error.status in (401, 403):
            # reachable; the credentials are refused for /version (some clusters): the later calls will say
            return "unknown (version refused)"
        raise ClusterUnreachableError(
            f"the cluster's API server {server_of(client)} answered {error.status} {error.reason}"
        ) from None
    except Exception as error:
        problem = unreachable(client, error)
        if problem is None:
            raise
        raise problem from None
    version = str(getattr(info, "git_version", "") or "unknown")
    log.info("kubernetes: API server %s is reachable (version %s)", server_of(client), version)
    return version

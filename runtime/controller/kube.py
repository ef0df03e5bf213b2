"""API access for the agents: the typed client (handler, migration agent) and kopf's credentials, from in-cluster
config or a kubeconfig. The controller's own calls are ``runtime.controller.api``'s, on its event loop."""

from __future__ import annotations

import os
from typing import Any

import kubernetes

POOL_SIZE = 32  # HTTP connections kept by a typed client, for the threads that share it


def api_client(kubeconfig: str | None = None) -> kubernetes.client.ApiClient:
    """In a pod: the service account; else ``kubeconfig`` or $KUBECONFIG / ~/.kube/config.

    The pool holds a connection per thread that shares the client (POOL_SIZE): the default (5 per CPU) makes the
    others open and drop a connection for each request.
    """
    configuration = kubernetes.client.Configuration()
    configuration.connection_pool_maxsize = POOL_SIZE
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        kubernetes.config.load_incluster_config(client_configuration=configuration)
        return kubernetes.client.ApiClient(configuration)
    client = kubernetes.config.new_client_from_config(config_file=kubeconfig, client_configuration=configuration)
    # A kubeconfig token makes the client re-apply the kubeconfig before every request (to refresh expiring
    # credentials), and each time it sets the host it derives the proxy from the environment again (a scan of
    # os.environ, ~15 % of a request's CPU). The proxy the environment gave at start, made explicit, stays.
    client.configuration.proxy = client.configuration.proxy
    return client


def connection_info(kubeconfig: str | None = None) -> Any:
    """kopf's credentials from the same source as ``api_client``."""
    import kopf

    configuration = kubernetes.client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    else:
        kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    keys = configuration.api_key or {}
    raw = keys.get("BearerToken") or keys.get("authorization") or ""
    token = raw.removeprefix("Bearer ").strip() or None
    return kopf.ConnectionInfo(
        server=configuration.host,
        token=token,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        proxy_url=configuration.proxy,  # the kubeconfig's proxy-url, else the environment's for this server
    )


def require_credentials(kubeconfig: str | None) -> None:
    """Exit with one line when the agent's credentials cannot be read (no such kubeconfig, no service account):
    kopf would retry its login forever, saying nothing but a traceback a minute."""
    try:
        connection_info(kubeconfig)
    except (kubernetes.config.ConfigException, OSError) as error:
        where = f"kubeconfig {kubeconfig}" if kubeconfig else "the in-cluster service account or $KUBECONFIG"
        raise SystemExit(f"error: cannot read the API credentials from {where}: {error}") from None

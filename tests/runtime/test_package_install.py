"""The package as installed, outside the checkout: `pip install <checkout>` into a fresh venv, then the runtime's
entry points import without `migrator`, and `migrator runtime install` finds its CRDs and manifests (package
data) and applies them to the fake API server started from the checkout.

Slow (a venv and the dependencies, libvirt-python built from source unless pip has its wheel cached: 1-3 min).
"""

from __future__ import annotations

import json
import os
import subprocess
import venv
from pathlib import Path

import kubernetes
import pytest

from tests.fakekube import FakeApiProcess

PROJECT = Path(__file__).resolve().parents[2]
NO_MIGRATOR = (
    "import runtime.launcher, runtime.controller, runtime.handler, sys; "
    "assert not [m for m in sys.modules if m.split('.')[0] == 'migrator']"
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (no system site-packages) with only the package installed from the checkout."""
    root = tmp_path_factory.mktemp("installed")
    venv.create(root / "venv", with_pip=True)
    python = root / "venv" / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-compile", str(PROJECT)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def outside(installed: Path) -> dict[str, str]:
    """An environment in which nothing of the checkout is importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{installed / 'venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_runtime_entry_points_import_nothing_from_migrator(installed: Path) -> None:
    python = installed / "venv" / "bin" / "python"
    where = subprocess.run(
        [str(python), "-c", "import runtime, sys; print(runtime.__file__)"],
        cwd=installed,
        env=outside(installed),
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(PROJECT) not in where.stdout  # the installed copy, not the checkout
    done = subprocess.run(
        [str(python), "-c", NO_MIGRATOR], cwd=installed, env=outside(installed), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_runtime_install_from_the_package_creates_the_crds(installed: Path) -> None:
    kubeconfig = installed / "kubeconfig"
    with FakeApiProcess(kubeconfig):  # `python -m tests.fakekube --kubeconfig K`, from the checkout
        done = subprocess.run(
            [str(installed / "venv" / "bin" / "migrator"), "runtime", "install", "--kubeconfig", str(kubeconfig)],
            cwd=installed,
            env=outside(installed),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "applied CustomResourceDefinition/virtualmachines.kubevirt.io" in done.stdout
        assert "applied DaemonSet/migrator-handler" in done.stdout
        client = kubernetes.config.new_client_from_config(str(kubeconfig))
        api = kubernetes.client.ApiextensionsV1Api(client)
        listing = json.loads(api.list_custom_resource_definition(_preload_content=False).data)
        names = {crd["metadata"]["name"] for crd in listing["items"]}
        assert {"virtualmachines.kubevirt.io", "virtualmachineinstances.kubevirt.io"} <= names

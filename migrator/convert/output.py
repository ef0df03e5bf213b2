"""The output-directory target: manifests as YAML beside one image per disk (docs/architecture.md)."""

from __future__ import annotations

import os
from pathlib import Path

from converters.specs import Manifests, dump
from core import private
from core.errors import TargetError


def manifest_files(manifests: Manifests) -> dict[str, str]:
    """File name → content: ``<vm>-vm.yaml``, ``<claim>-pvc.yaml`` or ``<claim>-dv.yaml``."""
    files = {f"{manifests.name}-vm.yaml": dump(manifests.virtual_machine)}
    for volume in manifests.volumes:
        suffix = "dv" if volume["kind"] == "DataVolume" else "pvc"
        files[f"{volume['metadata']['name']}-{suffix}.yaml"] = dump(volume)
    return files


def write_manifests(out_dir: Path, manifests: Manifests) -> list[Path]:
    """Write atomically; a file whose content is already right is left alone (same bytes, same mtime)."""
    written = []
    try:
        private.private_dir(out_dir)
        for name, content in manifest_files(manifests).items():
            path = out_dir / name
            if not (path.exists() and path.read_text() == content):
                partial = path.with_name(f".{name}.tmp")
                partial.write_text(content)
                os.replace(partial, path)
            written.append(path)
    except OSError as error:
        raise TargetError(f"cannot write manifests to {out_dir}: {error.strerror or error}") from None
    return written

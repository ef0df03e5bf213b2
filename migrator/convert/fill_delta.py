"""Filling a PersistentVolumeClaim with a delta: only given extents of the image, into the volume's disk.

The first copy of a warm migration fills the volume whole (``cluster.fill_with_pod``); each later
round sends only the extents that changed, through the same kind of filler pod: its shell reads
a stream of ``<offset> <length>`` lines, each followed by that many bytes, and writes them with
``dd`` (busybox's or GNU's: ``iflag=fullblock,count_bytes oflag=seek_bytes conv=notrunc``) at the
offset of ``disk.img`` or of the block device; a ``0 0`` line ends it (the exec protocol cannot
half-close stdin). The volume is then annotated with the round's key, so a re-run of the same
round does not send it again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.errors import TargetError
from migrator.convert import cluster

FILLED_BY = "migrator.io/filled-by"  # the key of the last copy (full or delta) the volume holds
_PIECE = 4 << 20


def apply_script(target: str) -> str:
    """The filler's shell: apply a delta stream from stdin to ``target`` (a file or a block device)."""
    return (
        "while read off len; do "
        '[ "$len" = 0 ] && exit 0; '
        f"dd of={target} bs=65536 iflag=fullblock,count_bytes oflag=seek_bytes seek=$off count=$len conv=notrunc "
        "2>/dev/null || exit 1; "
        "done; exit 2"  # the stream ended without its last line
    )


def delta_stream(image: Path, extents: list[tuple[int, int]]) -> Iterator[bytes]:
    """``<offset> <length>\\n`` + the bytes, per extent, then ``0 0\\n``."""
    with image.open("rb") as f:
        for start, length in extents:
            yield f"{start} {length}\n".encode()
            f.seek(start)
            left = length
            while left:
                chunk = f.read(min(_PIECE, left))
                if not chunk:
                    raise TargetError(f"{image}: shorter than extent {start}+{length}")
                yield chunk
                left -= len(chunk)
    yield b"0 0\n"


def _filled_by(client: Any, pvc: dict[str, Any]) -> str | None:
    resource = cluster.api_resource(client, pvc)
    try:
        live = resource.get(name=pvc["metadata"]["name"], namespace=pvc["metadata"]["namespace"]).to_dict()
    except Exception:  # not there (yet): nothing filled
        return None
    return ((live.get("metadata") or {}).get("annotations") or {}).get(FILLED_BY)


def _mark(client: Any, pvc: dict[str, Any], key: str, size: int) -> None:
    body = {
        "apiVersion": pvc["apiVersion"],
        "kind": pvc["kind"],
        "metadata": {
            "name": pvc["metadata"]["name"],
            "namespace": pvc["metadata"]["namespace"],
            "annotations": {FILLED_BY: key, cluster.FILLED_ANNOTATION: str(size)},
        },
    }
    client.server_side_apply(
        cluster.api_resource(client, pvc),
        body=body,
        name=pvc["metadata"]["name"],
        namespace=pvc["metadata"]["namespace"],
        field_manager=f"{cluster.FIELD_MANAGER}-filler",
        force_conflicts=True,
    )


def publish(client: Any, pvc: dict[str, Any], image: Path, extents: list[tuple[int, int]] | None, *, key: str) -> None:
    """Put the image (``extents`` None) or those extents of it into the volume; once per ``key``."""
    if _filled_by(client, pvc) == key:
        return
    if extents is None:
        cluster.fill_with_pod(client, pvc, image, lambda _line: None)
    elif extents:
        _fill_extents(client, pvc, image, extents)
    _mark(client, pvc, key, image.stat().st_size)


def _fill_extents(client: Any, pvc: dict[str, Any], image: Path, extents: list[tuple[int, int]]) -> None:
    cluster.exec_in_filler_pod(
        client, pvc, apply_script, delta_stream(image, extents), what="applying the delta to", before="delta"
    )

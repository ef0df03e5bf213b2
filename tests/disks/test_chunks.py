"""The zero scan: our buffers (compared by libc's memcmp, without the GIL) and read-only mappings
(compared in Python) find the same non-zero blocks, at any alignment."""

from __future__ import annotations

import mmap
import random

import pytest

from converters.disks.chunks import BLOCK, nonzero_runs


def _expected(data: bytes, n: int, base: int) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    i = 0
    while i < n:
        j = min((base + i) // BLOCK * BLOCK + BLOCK - base, n)
        if any(data[i:j]):
            if runs and runs[-1][1] == i:
                runs[-1] = (runs[-1][0], j)
            else:
                runs.append((i, j))
        i = j
    return runs


@pytest.mark.parametrize("seed", range(6))
def test_buffer_and_mapping_scans_agree(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.choice([40 * BLOCK, 3 * BLOCK + 100, 5000, BLOCK])
    buf = bytearray(n)
    for _ in range(rng.randint(0, 6)):  # a few stray bytes, some in a block's last byte (after the probe)
        at = rng.choice([rng.randrange(n), min(n - 1, rng.randrange(n) // BLOCK * BLOCK + BLOCK - 1)])
        buf[at] = rng.randint(1, 255)
    base = rng.choice([0, 4096, 7 * BLOCK])
    mapping = mmap.mmap(-1, n)
    mapping[:] = bytes(buf)
    view = memoryview(mapping)
    try:
        expected = _expected(bytes(buf), n, base)
        assert nonzero_runs(buf, n, base) == expected
        assert nonzero_runs(view, n, base) == expected
    finally:
        view.release()
        mapping.close()


def test_a_chunk_of_zeros_has_no_runs_and_a_last_byte_is_found() -> None:
    buf = bytearray(256 * BLOCK)
    assert nonzero_runs(buf, len(buf)) == []
    buf[-1] = 1
    assert nonzero_runs(buf, len(buf)) == [(255 * BLOCK, 256 * BLOCK)]

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


@pytest.mark.parametrize("base", [0, 4096, 3 * BLOCK + 512])
def test_dense_data_with_zero_blocks_and_zero_first_bytes(base: int) -> None:
    """Data blocks are told by one byte each, the rest compared whole: a data block that starts
    with zeros, a zero block but for its first or last byte, and whole zero blocks are all told right."""
    rng = random.Random(base)
    n = 24 * BLOCK + 777
    data = bytearray(rng.randbytes(n))
    first = (-base) % BLOCK
    starts = [0] + list(range(first, n, BLOCK)) if first else list(range(0, n, BLOCK))
    ends = starts[1:] + [n]
    for k, (a, b) in enumerate(zip(starts, ends, strict=True)):
        if k % 4 == 1:  # a zero block
            data[a:b] = bytes(b - a)
        elif k % 4 == 2:  # data that starts with a zero byte (and 40 more)
            data[a : a + 41] = bytes(41)
        elif k % 8 == 3:  # zeros but for the last byte
            data[a:b] = bytes(b - a)
            data[b - 1] = 7
        elif k % 8 == 7:  # zeros but for the first byte
            data[a:b] = bytes(b - a)
            data[a] = 9
    mapping = mmap.mmap(-1, n)
    mapping[:] = bytes(data)
    view = memoryview(mapping)
    try:
        expected = _expected(bytes(data), n, base)
        assert expected and len(expected) > 3
        assert nonzero_runs(data, n, base) == expected
        assert nonzero_runs(view, n, base) == expected
    finally:
        view.release()
        mapping.close()

"""Test helper: operations on an :class:`dynfix.hw.ice40_spram.SPRAM` and the words its reads
must return, from a plain Python model of the cell (a write enable per nibble, a read's data
one cycle later); shared by the Amaranth test and the cocotb test of the cells."""

from __future__ import annotations

import random


def spram_ops(depth: int, width: int, seed: int = 1, n: int = 400) -> list[dict]:
    """Writes of whole words to a set of addresses spread over every row of cells, then
    random reads and nibble-masked writes. Each op: ``addr``, ``w_en``, ``w_data``,
    ``w_mask``, and for a read ``want`` (the word it returns)."""
    rng = random.Random(seed)
    cols = -(-width // 16)
    addrs = sorted(rng.sample(range(depth), 40) + [0, depth - 1])
    mem: dict[int, int] = {}
    ops = []
    full = (1 << (4 * cols)) - 1
    for a in addrs:
        d = rng.getrandbits(16 * cols)
        ops.append({"addr": a, "w_en": 1, "w_data": d, "w_mask": full})
        mem[a] = d
    for _ in range(n):
        a = rng.choice(addrs)
        if rng.random() < 0.4:
            d, mask = rng.getrandbits(16 * cols), rng.getrandbits(4 * cols)
            ops.append({"addr": a, "w_en": 1, "w_data": d, "w_mask": mask})
            keep = sum(0xF << (4 * i) for i in range(4 * cols) if not mask >> i & 1)
            mem[a] = (mem[a] & keep) | (d & ~keep)
        else:
            ops.append({"addr": a, "w_en": 0, "w_data": rng.getrandbits(16 * cols),
                        "w_mask": rng.getrandbits(4 * cols),
                        "want": mem[a] & ((1 << width) - 1)})
    return ops

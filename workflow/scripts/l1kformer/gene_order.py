"""gene_order: each profile's genes sorted by expression, highest first; the gene indices are the tokens.

Ties are broken by gene index (lower first), so the ranking is deterministic even though Level-3
values are stored with few decimals and capped at 15. The sort is vectorised: each value becomes a
64-bit key (order-preserving float bits, inverted for descending order, then the gene index in the
low bits) and ``np.sort`` on those keys is several times faster than a stable ``argsort``.
Numpy only; the rank step (rank.py) uses it.
"""

import sys

import numpy as np

assert sys.byteorder == "little", "rank_genes packs 64-bit keys assuming a little-endian machine"


def rank_genes(values, chunk_rows=256, out=None, sorted_out=None):
    """Gene indices (int16) of each row of ``values`` (samples x genes), highest value first; written
    into ``out`` when given. ``sorted_out`` (float32, samples x genes), when given, receives the values
    in that order (decoded from the sort keys: cheaper than sorting again).

    Works through ``chunk_rows`` profiles at a time so that the 64-bit keys stay in cache (about
    twice as fast as one pass over a large block).
    """
    values = np.asarray(values, dtype=np.float32)
    n, g = values.shape
    if g > np.iinfo(np.int16).max:
        raise ValueError(f"{g} genes do not fit int16 tokens")
    out = np.empty((n, g), dtype=np.int16) if out is None else out
    gene_index = np.arange(g, dtype=np.uint32)
    for start in range(0, n, chunk_rows):
        stop = min(start + chunk_rows, n)
        bits = (values[start:stop] + np.float32(0.0)).view(np.uint32)  # -0.0 -> +0.0: a tie
        # Order-preserving map of IEEE float bits to unsigned ints, inverted so the largest value
        # gets the smallest key: negative floats keep their bits, positive ones are XORed with
        # 0x7FFFFFFF. The gene index fills the low 32 bits, so ties sort by gene index.
        sign = bits >> np.uint32(31)
        keys = np.empty((stop - start, g), dtype=np.uint64)
        halves = keys.view(np.uint32).reshape(stop - start, g, 2)  # little-endian: [..., 0] is low
        np.bitwise_xor(bits, (sign - np.uint32(1)) & np.uint32(0x7FFFFFFF), out=halves[..., 1])
        halves[..., 0] = gene_index
        keys.sort(axis=1)
        out[start:stop] = halves[..., 0]
        if sorted_out is not None:  # the map is its own inverse
            high = halves[..., 1]
            sorted_out[start:stop] = (high ^ (((high >> np.uint32(31)) - np.uint32(1)) & np.uint32(0x7FFFFFFF))
                                      ).view(np.float32)
    return out


def rank_genes_loop(values):
    """Reference implementation: one stable argsort per profile (the seed's loop)."""
    out = np.empty(values.shape, dtype=np.int16)
    for i, row in enumerate(values):
        out[i] = np.argsort(-row, kind="stable")
    return out

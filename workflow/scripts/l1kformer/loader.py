"""Batches from a row-chunked HDF5 matrix without loading it whole.

Rows are read window by window (``window_rows`` consecutive file rows at a time); each epoch visits the
windows in a seeded random order, pools ``mix`` windows, shuffles the selected rows inside the pool and
cuts batches. Host memory is bounded by ``mix x window_rows`` rows whatever the number of profiles;
with fewer rows than one pool this is a full shuffle.
"""

import h5py
import numpy as np


class RowBatches:
    def __init__(self, path, dataset, rows, batch_size, window_rows=16384, mix=4):
        self.path, self.dataset = path, dataset
        self.rows = np.sort(np.asarray(rows, dtype=np.int64))
        self.batch_size, self.window_rows, self.mix = batch_size, window_rows, mix
        window_of = self.rows // window_rows
        self.windows = [self.rows[window_of == w] for w in np.unique(window_of)]

    def __len__(self):
        return -(-len(self.rows) // self.batch_size)

    def _read(self, h5, rows):
        lo, hi = rows[0], rows[-1] + 1
        return h5[self.dataset][lo:hi][rows - lo]

    def epoch(self, seed, epoch, shuffle=True):
        """Yield (row indices, values) batches; the order depends only on (seed, epoch)."""
        rng = np.random.default_rng([seed, epoch, 7])
        order = rng.permutation(len(self.windows)) if shuffle else np.arange(len(self.windows))
        with h5py.File(self.path, "r") as h5:
            carry_rows, carry_values = None, None
            for start in range(0, len(order), self.mix):
                pool = [self.windows[w] for w in order[start:start + self.mix]]
                rows = np.concatenate(pool)
                values = np.concatenate([self._read(h5, w) for w in pool])
                if shuffle:
                    perm = rng.permutation(len(rows))
                    rows, values = rows[perm], values[perm]
                if carry_rows is not None:
                    rows = np.concatenate([carry_rows, rows])
                    values = np.concatenate([carry_values, values])
                full = len(rows) - len(rows) % self.batch_size
                for b in range(0, full, self.batch_size):
                    yield rows[b:b + self.batch_size], values[b:b + self.batch_size]
                carry_rows, carry_values = rows[full:], values[full:]
            if carry_rows is not None and len(carry_rows):
                yield carry_rows, carry_values


def masked_batches(loader, mask_rows, mask_positions):
    """(values, positions) per batch of ``loader`` (a :class:`RowBatches` over the statically masked
    ``mask_rows``, sorted), in row order: each profile's masked positions (``mask_positions``) as int64."""
    for rows, values in loader.epoch(0, 0, shuffle=False):
        yield values, mask_positions[np.searchsorted(mask_rows, rows)].astype(np.int64)


def in_order(path, dataset, rows, window_rows=16384):
    """(rows, values) of ``rows`` in row order, a window of the file at a time."""
    return RowBatches(path, dataset, rows, batch_size=window_rows, window_rows=window_rows, mix=1).epoch(
        0, 0, shuffle=False)


def read_rows(path, dataset, rows, window_rows=16384):
    """The values of ``rows`` (sorted) as one array; for sets that fit in memory."""
    return np.concatenate([v for _, v in in_order(path, dataset, rows, window_rows)])


def column_stats(path, dataset, rows, window_rows=16384):
    """Per-column mean and standard deviation (float64) over ``rows``, read window by window."""
    total, total_sq, n = 0.0, 0.0, 0
    for _, values in in_order(path, dataset, rows, window_rows):
        v = values.astype(np.float64)
        total = total + v.sum(axis=0)
        total_sq = total_sq + (v * v).sum(axis=0)
        n += len(v)
    mean = total / n
    return mean, np.sqrt(np.maximum(total_sq / n - mean * mean, 0.0))


def masked_set(path, dataset, mask_rows, mask_positions):
    """All values of a masked set and its positions, aligned (profiles x genes, profiles x k)."""
    values = read_rows(path, dataset, mask_rows)
    return values, mask_positions.astype(np.int64)

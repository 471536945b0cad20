"""Update schedules: which cells apply :func:`~nca_sim.kernels.update_cells`, in what order, and when.

- ``sync`` and ``bernoulli``: every cell reads the same snapshot and the new
  states go to a second grid. ``bernoulli`` lets each cell fire with probability
  ``p``; ``sync`` is ``p = 1``. Grid row ``i`` draws from random stream ``i``, so
  the result does not depend on the number of threads.
- ``async``: random-sequential and in place. Each region (a band of rows) is cut
  into tiles of ``TILE`` x ``TILE`` cells. At every step it visits
  the tiles in a random order and, inside a tile, the cells in a random order
  (a random permutation), so every cell updates exactly once per step. Each
  update reads the neighbours' current states.
- ``clock``: every cell fires at the events of its own Poisson clock. Each tile
  of a region keeps its cells in a binary min-heap of next fire times. The
  region visits its tiles in a random order and applies each tile's updates in
  time order up to the end of the step, so time order holds inside a tile and
  tiles advance one after the other, like separate processors.

The asynchronous schedules give each thread one region, run without locks or
barriers inside a step, and let a thread read the live state of the rows next
to its band while their owner writes them. That race is intended: it models
independent processors that see their neighbours' state whenever they look. A
read may even see a cell with some channels already updated, which is why
multi-thread runs are not bit-reproducible. A region draws from the random
stream of its first row.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from nca_sim.kernels import (
    BATCH,
    CONFIG_PADDING,
    CONFIG_RESET_GATE,
    independent_cells,
    make_scratch_jit,
    store_cells,
    update_cells,
)
from nca_sim.numba_config import parallel_jit, serial_jit
from nca_sim.random import below, exponential, fill_normal, uniform

SCHEDULES = ("sync", "bernoulli", "async", "clock")

# Side of the square tiles in which ``async`` and ``clock`` order their updates.
# A 32x32 tile of the default rule's state (48 channels) is 192 KiB, which fits
# in a 512 KiB or larger L2 cache together with its border rows.
TILE = 32


def band_rows(height: int, threads: int) -> np.ndarray:
    """Return the first row of each region and the grid height, ``(regions + 1,)`` int64."""
    regions = max(1, min(threads, height))
    return np.linspace(0, height, regions + 1).round().astype(np.int64)


@serial_jit
def _draw_noise(streams, stream, noise, use_noise, i, j, z):
    if use_noise:
        z[:] = noise[i, j]
    else:
        fill_normal(streams, stream, z)


@parallel_jit
def synchronous_step(
    state, new_state, probability, config, eps, shift, scale, term, pointwise, weights, streams, noise, use_noise,
    row_updates, row_gate_sums,
):
    """Write the next state of every cell into ``new_state``; a cell fires with ``probability``.

    Per row, counts of fired cells go to ``row_updates`` and sums of their gate
    values to ``row_gate_sums``. The fired cells of a row are computed in
    batches of ``BATCH``, which is exact because they all read the snapshot ``state``.
    """
    height, width, d = state.shape
    hidden = weights[5].shape[0]
    gate = config[CONFIG_RESET_GATE]
    for i in prange(height):
        scratch = make_scratch_jit(d, hidden, BATCH)
        z, out = scratch[4], scratch[5]
        rows = np.full(BATCH, i, np.int64)
        cols = np.empty(BATCH, np.int64)
        updates = 0
        gate_sum = 0.0
        n = 0
        for j in range(width):
            if probability < 1.0 and uniform(streams, i) >= probability:
                new_state[i, j] = state[i, j]
                continue
            if gate:
                _draw_noise(streams, i, noise, use_noise, i, j, z[n])
            cols[n] = j
            n += 1
            if n == BATCH:
                gate_sum += update_cells(state, rows, cols, n, config, eps, shift, scale, term, pointwise, weights, scratch)
                for b in range(n):
                    new_state[i, cols[b]] = out[b]
                updates += n
                n = 0
        if n > 0:
            gate_sum += update_cells(state, rows, cols, n, config, eps, shift, scale, term, pointwise, weights, scratch)
            for b in range(n):
                new_state[i, cols[b]] = out[b]
            updates += n
        row_updates[i] = updates
        row_gate_sums[i] = gate_sum


@serial_jit
def _shuffle(values, streams, stream):
    """Shuffle ``values`` in place (Fisher-Yates)."""
    for k in range(values.shape[0] - 1, 0, -1):
        other = below(streams, stream, k + 1)
        values[k], values[other] = values[other], values[k]


@serial_jit
def _joins_batch(i, j, rows, cols, n, height, width, padding):
    """Return True when cell (i, j) is independent of the ``n`` cells already in the batch."""
    for b in range(n):
        if not independent_cells(rows[b], cols[b], i, j, height, width, padding):
            return False
    return True


@parallel_jit
def asynchronous_step(
    state, bands, tile, config, eps, shift, scale, term, pointwise, weights, streams, noise, use_noise,
    band_updates, band_gate_sums,
):
    """Update every cell once, in place, in a random order per band of rows (``bands`` from :func:`band_rows`).

    A band is cut into ``tile`` x ``tile`` tiles. The tiles are visited in a
    random order and the cells of a tile in a random order, so that a tile's
    state stays in the cache while its cells update. Consecutive cells of the
    order that do not read each other (up to ``BATCH``) are computed together.
    The result is the same as updating them one after the other.
    """
    height, width, d = state.shape
    hidden = weights[5].shape[0]
    gate = config[CONFIG_RESET_GATE]
    padding = config[CONFIG_PADDING]
    for b in prange(bands.shape[0] - 1):
        first_row = bands[b]
        last_row = bands[b + 1]
        scratch = make_scratch_jit(d, hidden, BATCH)
        z = scratch[4]
        rows = np.empty(BATCH, np.int64)
        cols = np.empty(BATCH, np.int64)
        tiles_y = (last_row - first_row + tile - 1) // tile
        tiles_x = (width + tile - 1) // tile
        tile_order = np.arange(tiles_y * tiles_x)
        _shuffle(tile_order, streams, first_row)
        cells = np.empty(tile * tile, np.int64)

        gate_sum = 0.0
        for t in tile_order:
            y0 = first_row + (t // tiles_x) * tile
            x0 = (t % tiles_x) * tile
            y1 = min(y0 + tile, last_row)
            x1 = min(x0 + tile, width)
            count = 0
            for i in range(y0, y1):
                for j in range(x0, x1):
                    cells[count] = i * width + j
                    count += 1
            order = cells[:count]
            _shuffle(order, streams, first_row)

            k = 0
            while k < count:
                n = 0
                while k < count and n < BATCH:
                    i = order[k] // width
                    j = order[k] % width
                    if not _joins_batch(i, j, rows, cols, n, height, width, padding):
                        break
                    if gate:
                        _draw_noise(streams, first_row, noise, use_noise, i, j, z[n])
                    rows[n] = i
                    cols[n] = j
                    n += 1
                    k += 1
                gate_sum += update_cells(state, rows, cols, n, config, eps, shift, scale, term, pointwise, weights, scratch)
                store_cells(state, rows, cols, n, config, eps, shift, scale, term, pointwise, weights, scratch)
        band_updates[b] = (last_row - first_row) * width
        band_gate_sums[b] = gate_sum


# -- Poisson clocks --------------------------------------------------------------------


@serial_jit
def _sift_down(heap, position, keys):
    """Restore the min-heap property of ``heap`` (cell indices ordered by ``keys``) below ``position``."""
    size = heap.shape[0]
    item = heap[position]
    key = keys[item]
    while True:
        child = 2 * position + 1
        if child >= size:
            break
        if child + 1 < size and keys[heap[child + 1]] < keys[heap[child]]:
            child += 1
        if keys[heap[child]] >= key:
            break
        heap[position] = heap[child]
        position = child
    heap[position] = item


@serial_jit
def _tile_bounds(first_row, last_row, width, tile, t):
    """Return rows [y0, y1), columns [x0, x1) and the heap offset of tile ``t`` (row-major) of a band."""
    tiles_x = (width + tile - 1) // tile
    y0 = first_row + (t // tiles_x) * tile
    x0 = (t % tiles_x) * tile
    y1 = min(y0 + tile, last_row)
    x1 = min(x0 + tile, width)
    # Tiles before this one in row-major order hold (y0 * width) + (y1 - y0) * x0 cells.
    return y0, y1, x0, x1, y0 * width + (y1 - y0) * x0


@serial_jit
def _tile_count(first_row, last_row, width, tile):
    return ((last_row - first_row + tile - 1) // tile) * ((width + tile - 1) // tile)


@serial_jit
def build_heaps(bands, width, tile, next_time, heap):
    """Fill ``heap`` with one min-heap per tile of each band, of its cells keyed by ``next_time``."""
    for b in range(bands.shape[0] - 1):
        for t in range(_tile_count(bands[b], bands[b + 1], width, tile)):
            y0, y1, x0, x1, offset = _tile_bounds(bands[b], bands[b + 1], width, tile, t)
            count = (y1 - y0) * (x1 - x0)
            region = heap[offset : offset + count]
            k = 0
            for i in range(y0, y1):
                for j in range(x0, x1):
                    region[k] = i * width + j
                    k += 1
            for position in range(count // 2 - 1, -1, -1):
                _sift_down(region, position, next_time)


@serial_jit
def draw_clock_times(start_time, rates, streams, width, next_time):
    """Set every cell's first fire time after ``start_time``; row ``i`` draws from stream ``i``."""
    for cell in range(next_time.shape[0]):
        next_time[cell] = start_time + exponential(streams, cell // width, rates[cell])


@parallel_jit
def clock_step(
    state, bands, tile, end_time, next_time, rates, heap, config, eps, shift, scale, term, pointwise, weights,
    streams, noise, use_noise, band_updates, band_gate_sums,
):
    """Apply every clock event before ``end_time``, in place, in time order per tile.

    ``next_time`` (float64, one per cell, row-major) holds absolute fire times,
    ``rates`` the clock rates, and ``heap`` the per-tile heaps from :func:`build_heaps`.
    A band visits its tiles in a random order and runs each tile's clocks up to
    ``end_time`` before the next tile. An event first draws the cell's next fire
    time, then its reset noise. Consecutive events at cells that do not read
    each other (up to ``BATCH``) are computed together (the result does not
    depend on their order).
    """
    height, width, d = state.shape
    hidden = weights[5].shape[0]
    gate = config[CONFIG_RESET_GATE]
    padding = config[CONFIG_PADDING]
    for b in prange(bands.shape[0] - 1):
        first_row = bands[b]
        last_row = bands[b + 1]
        scratch = make_scratch_jit(d, hidden, BATCH)
        z = scratch[4]
        rows = np.empty(BATCH, np.int64)
        cols = np.empty(BATCH, np.int64)
        tile_order = np.arange(_tile_count(first_row, last_row, width, tile))
        _shuffle(tile_order, streams, first_row)
        updates = 0
        gate_sum = 0.0
        for t in tile_order:
            y0, y1, x0, x1, offset = _tile_bounds(first_row, last_row, width, tile, t)
            region = heap[offset : offset + (y1 - y0) * (x1 - x0)]
            while next_time[region[0]] < end_time:
                n = 0
                while n < BATCH:
                    cell = region[0]
                    if next_time[cell] >= end_time:
                        break
                    i = cell // width
                    j = cell % width
                    if not _joins_batch(i, j, rows, cols, n, height, width, padding):
                        break
                    next_time[cell] += exponential(streams, first_row, rates[cell])
                    _sift_down(region, 0, next_time)
                    if gate:
                        _draw_noise(streams, first_row, noise, use_noise, i, j, z[n])
                    rows[n] = i
                    cols[n] = j
                    n += 1
                gate_sum += update_cells(state, rows, cols, n, config, eps, shift, scale, term, pointwise, weights, scratch)
                store_cells(state, rows, cols, n, config, eps, shift, scale, term, pointwise, weights, scratch)
                updates += n
        band_updates[b] = updates
        band_gate_sums[b] = gate_sum

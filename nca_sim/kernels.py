"""The per-cell update network, normalization statistics, and the image encoder and decoder.

The state grid is ``(height, width, channels)`` float32, so one cell's state is a
contiguous vector. :func:`update_cells` computes the new states of a batch of
cells that do not read each other from any grid: a snapshot for the synchronous
schedules, the live grid for the asynchronous ones. The schedules in
:mod:`nca_sim.schedules` decide which cells form a batch and when. It follows
``SegmentationNCA.step`` in ``nca_train/model.py``; the parity tests in
``tests/test_engine_parity.py`` compare the two.

Weights are repacked from the rule file's PyTorch layouts to ``(in, out)``
float32 matrices, and each layer of a batch is one BLAS matrix product
(``np.dot``). In a microbenchmark of the default rule's update network (AMD EPYC,
Numba 0.68, OpenBLAS 0.3.31) this ran 1.5 times as fast as the hand-written
two-cell loops it replaced. One compiled kernel serves every architecture: the
variant travels as small integers in ``config`` (see :func:`config_array`), which
keeps the number of compiled specializations, and so the first-compile time, low.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from numba import prange

from nca_sim.numba_config import parallel_jit, serial_jit
from nca_sim.rule import Rule

# Indices into the int64 ``config`` array that every kernel receives.
CONFIG_PERCEPTION = 0  # 0: full 3x3, 1: pointwise 1x1 then depthwise 3x3
CONFIG_PADDING = 1  # 0: zero, 1: replicate, 2: circular
CONFIG_PIXEL_NORM = 2  # 1: per-cell pixel normalization; 0: per-channel affine (none, batch, instance)
CONFIG_RESIDUAL = 3
CONFIG_RESET_GATE = 4
CONFIG_SIZE = 5

PADDING_CODES = {"zero": 0, "replicate": 1, "circular": 2}
_NUMPY_PAD_MODES = {"zero": "constant", "replicate": "edge", "circular": "wrap"}


class PackedWeights(NamedTuple):
    """A rule's update-network weights as float32 ``(in, out)`` matrices, ready for ``x @ weight``.

    Absent parts (the depthwise layer of a full perception, the reset gate of a
    rule without one) are zero arrays of the same rank, so every rule has the
    same Numba type.
    """

    first: np.ndarray  # full: (9 * d, hidden), neighbour-major; depthwise: pointwise (d, hidden)
    depthwise_weight: np.ndarray  # (9, hidden)
    depthwise_bias: np.ndarray  # (hidden,)
    hidden_weight: np.ndarray  # (num_layers - 2, hidden, hidden)
    hidden_bias: np.ndarray  # (num_layers - 2, hidden)
    update_weight: np.ndarray  # (hidden, d)
    update_bias: np.ndarray  # (d,)
    reset_weight: np.ndarray  # (hidden, d)
    reset_bias: np.ndarray  # (d,)


def _f32(array) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32)


def pack_weights(rule: Rule) -> PackedWeights:
    """Repack ``rule``'s update network for :func:`update_cells`."""
    arch, weights = rule.architecture, rule.weights
    d, hidden = arch.state_channels, arch.hidden_channels
    if arch.perception == "full":
        # (hidden, d + c, 3, 3) -> (ky, kx, d, hidden) -> (9 * d, hidden); neighbour k = 3 * ky + kx.
        first = weights["perceive.weight"][:, :d].transpose(2, 3, 1, 0).reshape(9 * d, hidden)
        depthwise_weight = np.zeros((9, hidden), np.float32)
        depthwise_bias = np.zeros(hidden, np.float32)
    else:
        first = weights["pointwise.weight"][:, :d].T
        depthwise_weight = weights["depthwise.weight"].reshape(hidden, 9).T
        depthwise_bias = weights["depthwise.bias"]
    layers = arch.num_layers - 2
    hidden_weight = np.zeros((layers, hidden, hidden), np.float32)
    hidden_bias = np.zeros((layers, hidden), np.float32)
    for i in range(layers):
        hidden_weight[i] = weights[f"hidden.{i}.weight"].T
        hidden_bias[i] = weights[f"hidden.{i}.bias"]
    if arch.reset_gate:
        reset_weight, reset_bias = weights["reset.weight"].T, weights["reset.bias"]
    else:
        reset_weight, reset_bias = np.zeros((hidden, d), np.float32), np.zeros(d, np.float32)
    return PackedWeights(
        _f32(first),
        _f32(depthwise_weight),
        _f32(depthwise_bias),
        hidden_weight,
        hidden_bias,
        _f32(weights["update.weight"].T),
        _f32(weights["update.bias"]),
        _f32(reset_weight),
        _f32(reset_bias),
    )


def config_array(rule: Rule) -> np.ndarray:
    """Return the int64 ``config`` array that selects ``rule``'s variant inside the kernels."""
    arch = rule.architecture
    config = np.zeros(CONFIG_SIZE, np.int64)
    config[CONFIG_PERCEPTION] = 0 if arch.perception == "full" else 1
    config[CONFIG_PADDING] = PADDING_CODES[arch.padding]
    config[CONFIG_PIXEL_NORM] = 1 if arch.normalization == "pixel" else 0
    config[CONFIG_RESIDUAL] = int(arch.residual)
    config[CONFIG_RESET_GATE] = int(arch.reset_gate)
    return config


# -- image side: computed once per image ----------------------------------------------


def encode_image(rule: Rule, image: np.ndarray) -> np.ndarray:
    """Return the per-cell input ``(h, w, c)`` float32: the RGB itself, or the high-resolution encoding.

    The encoder is ``ReLU(conv3x3, stride 2)`` over the image padded by one pixel
    with the rule's padding mode, so an ``(H, W)`` image gives ``(H / 2, W / 2)`` cells.
    """
    arch = rule.architecture
    if not arch.highres:
        return _f32(image)
    weight, bias = rule.weights["encoder.weight"], rule.weights["encoder.bias"]
    cells_y, cells_x = image.shape[0] // 2, image.shape[1] // 2
    padded = np.pad(image, ((1, 1), (1, 1), (0, 0)), mode=_NUMPY_PAD_MODES[arch.padding])
    encoded = np.zeros((cells_y, cells_x, weight.shape[0]), np.float32)
    for ky in range(3):
        for kx in range(3):
            patch = padded[ky : ky + 2 * cells_y : 2, kx : kx + 2 * cells_x : 2, :]
            encoded += patch @ weight[:, :, ky, kx].T
    encoded += bias
    return _f32(np.maximum(encoded, 0.0))


def input_term(rule: Rule, cell_input: np.ndarray) -> np.ndarray:
    """Return the part of the first layer that depends only on the image, ``(h, w, hidden)`` float32.

    Full perception: the bias plus the 3x3 convolution of the input channels
    (padded like the state). Depthwise: the pointwise bias plus the pointwise
    layer of the cell's own input channels. The image is fixed during a run, so
    the kernels add this term instead of recomputing it at every update.
    """
    arch, weights = rule.architecture, rule.weights
    d = arch.state_channels
    height, width = cell_input.shape[:2]
    if arch.perception == "full":
        weight = weights["perceive.weight"][:, d:]  # (hidden, c, 3, 3)
        padded = np.pad(cell_input, ((1, 1), (1, 1), (0, 0)), mode=_NUMPY_PAD_MODES[arch.padding])
        term = np.zeros((height, width, weight.shape[0]), np.float32)
        for ky in range(3):
            for kx in range(3):
                term += padded[ky : ky + height, kx : kx + width, :] @ weight[:, :, ky, kx].T
        term += weights["perceive.bias"]
    else:
        term = cell_input @ weights["pointwise.weight"][:, d:].T + weights["pointwise.bias"]
    return _f32(term)


def logits(rule: Rule, state: np.ndarray) -> np.ndarray:
    """Return class logits ``(H_out, W_out, classes)`` float32 from the raw state ``(h, w, d)``.

    Plain rules apply the 1x1 classifier per cell. High-resolution rules apply
    ``ConvTranspose2d(kernel 4, stride 2, padding 1)``, whose output pixel ``y``
    receives input row ``i`` through kernel row ``ky = y + 1 - 2 i``.
    """
    arch, weights = rule.architecture, rule.weights
    if not arch.highres:
        return _f32(state @ weights["classifier.weight"].T + weights["classifier.bias"])
    weight = weights["decoder.weight"]  # (d, classes, 4, 4)
    height, width = state.shape[:2]
    # One extra row and column on each side absorbs the padding=1 crop.
    full = np.zeros((2 * height + 2, 2 * width + 2, weight.shape[1]), np.float32)
    for ky in range(4):
        for kx in range(4):
            full[ky : ky + 2 * height : 2, kx : kx + 2 * width : 2] += state @ weight[:, :, ky, kx]
    return _f32(full[1 : 2 * height + 1, 1 : 2 * width + 1] + weights["decoder.bias"])


# -- statistics ------------------------------------------------------------------------


@serial_jit
def channel_statistics(state, eps, shift, scale):
    """Store per-channel mean in ``shift`` and ``1 / sqrt(var + eps)`` in ``scale`` (biased variance).

    This is batch and instance normalization for one grid. Sums run in float64
    over two passes, so the result is at least as accurate as PyTorch's float32.
    """
    height, width, d = state.shape
    count = height * width
    total = np.zeros(d, np.float64)
    for i in range(height):
        for j in range(width):
            for c in range(d):
                total[c] += state[i, j, c]
    mean = total / count
    squares = np.zeros(d, np.float64)
    for i in range(height):
        for j in range(width):
            for c in range(d):
                delta = state[i, j, c] - mean[c]
                squares[c] += delta * delta
    for c in range(d):
        var = np.float32(squares[c] / count)
        shift[c] = np.float32(mean[c])
        scale[c] = np.float32(1.0) / np.sqrt(var + eps)


@serial_jit
def count_nonfinite(state):
    """Return how many values of ``state`` are NaN or infinite."""
    flat = state.reshape(-1)
    count = 0
    for k in range(flat.shape[0]):
        if not np.isfinite(flat[k]):
            count += 1
    return count


# -- one cell --------------------------------------------------------------------------


@serial_jit
def neighbour(i, j, dy, dx, height, width, padding):
    """Return the grid cell that the 3x3 layer reads at offset (dy, dx), or (-1, -1) for a zero pad."""
    ni = i + dy
    nj = j + dx
    if 0 <= ni < height and 0 <= nj < width:
        return ni, nj
    if padding == 0:
        return -1, -1
    if padding == 1:
        ni = min(max(ni, 0), height - 1)
        nj = min(max(nj, 0), width - 1)
    else:
        ni = ni % height
        nj = nj % width
    return ni, nj


@serial_jit
def load_normalized(src, i, j, pixel_norm, eps, shift, scale, x, offset):
    """Write cell (i, j)'s normalized state into ``x[offset : offset + d]``."""
    d = src.shape[2]
    values = src[i, j]
    target = x[offset : offset + d]
    if pixel_norm:
        squares = np.float32(0.0)
        for c in range(d):
            squares += values[c] * values[c]
        factor = np.float32(1.0) / np.sqrt(squares / np.float32(d) + eps)
        for c in range(d):
            target[c] = values[c] * factor
    else:
        for c in range(d):
            target[c] = (values[c] - shift[c]) * scale[c]


# Numba's np.dot calls SciPy's OpenBLAS, which runs a matrix product on one
# thread when m * n * k is at most SMP_THRESHOLD_MIN * GEMM_MULTITHREAD_THRESHOLD
# = 65536 * 4 (OpenBLAS interface/gemm.c, default build). Kernels keep every
# product under that limit, because inside a prange BLAS threads would compete with Numba's.
SINGLE_THREAD_PRODUCT = 4 * 65536

# Maximum number of cells that one call of update_cells computes together.
# Sixteen gained little over eight in a microbenchmark of the default rule's
# network (AMD EPYC, Numba 0.68, OpenBLAS 0.3.31): 1.42 against 1.33 million
# updates per second, and random orders rarely give long runs of independent cells.
BATCH = 16


@serial_jit
def matmul(a, b, out):
    """``out = a @ b`` for C-contiguous float32 matrices, in row blocks that keep BLAS on one thread."""
    rows = max(1, (SINGLE_THREAD_PRODUCT - 1) // (b.shape[0] * b.shape[1]))
    for start in range(0, a.shape[0], rows):
        stop = min(start + rows, a.shape[0])
        np.dot(a[start:stop], b, out[start:stop])


def make_scratch(d: int, hidden: int, batch: int):
    """Return the per-thread buffers of :func:`update_cells` for up to ``batch`` cells.

    Also callable inside kernels. Layout: ``x`` (batch, 9 d: gathered
    neighbourhoods), ``own`` (batch, d: normalized own states), ``hidden_a``,
    ``hidden_b`` (batch, hidden), ``z`` (batch, d: reset noise), ``out`` (batch, d:
    new states), ``gate`` (batch, d).
    """
    return (
        np.zeros((batch, 9 * d), np.float32),
        np.zeros((batch, d), np.float32),
        np.zeros((batch, hidden), np.float32),
        np.zeros((batch, hidden), np.float32),
        np.zeros((batch, d), np.float32),
        np.zeros((batch, d), np.float32),
        np.zeros((batch, d), np.float32),
    )


make_scratch_jit = serial_jit(make_scratch)


@serial_jit
def gather_neighbourhood(src, i, j, config, eps, shift, scale, x):
    """Write the normalized states of cell (i, j)'s 3x3 neighbourhood into ``x`` (9 d), zeros for a zero pad."""
    height, width, d = src.shape
    padding = config[CONFIG_PADDING]
    pixel_norm = config[CONFIG_PIXEL_NORM]
    for k in range(9):
        ni, nj = neighbour(i, j, k // 3 - 1, k % 3 - 1, height, width, padding)
        target = x[k * d : (k + 1) * d]
        if ni < 0:
            target[:] = 0.0
        elif pixel_norm:
            load_normalized(src, ni, nj, 1, eps, shift, scale, x, k * d)
        else:
            # Inlined by hand: through load_normalized, the gather took three times as long.
            values = src[ni, nj]
            for c in range(d):
                target[c] = (values[c] - shift[c]) * scale[c]


@serial_jit
def relu_add(values, bias):
    """``values[b] = ReLU(values[b] + bias)`` for every row ``b``; NaN stays NaN."""
    for b in range(values.shape[0]):
        row = values[b]
        for o in range(row.shape[0]):
            value = row[o] + bias[o]
            row[o] = np.float32(0.0) if value < 0.0 else value


@serial_jit
def add_rows(values, addend):
    """``values += addend`` for two matrices of the same shape."""
    for b in range(values.shape[0]):
        row = values[b]
        other = addend[b]
        for o in range(row.shape[0]):
            row[o] += other[o]


@parallel_jit
def pointwise_grid(state, config, eps, shift, scale, term, weights, pointwise):
    """Fill ``pointwise`` (h, w, hidden) with every cell's depthwise-rule pointwise output.

    That is the pointwise 1x1 layer of the cell's normalized state plus ``term``
    (bias and image part). The depthwise 3x3 layer reads it for all 9
    neighbours, so each cell's is computed once per step here, and again only
    when the cell updates in place (:func:`store_cells`).
    """
    height, width, d = state.shape
    pixel_norm = config[CONFIG_PIXEL_NORM]
    for i in prange(height):
        normalized = np.empty((width, d), np.float32)
        for j in range(width):
            load_normalized(state, i, j, pixel_norm, eps, shift, scale, normalized[j], 0)
        matmul(normalized, weights[0], pointwise[i])
        add_rows(pointwise[i], term[i])


@serial_jit
def update_cells(src, rows, cols, n, config, eps, shift, scale, term, pointwise, weights, scratch):
    """Compute the next states of cells ``(rows[b], cols[b])``, ``b < n``, from grid ``src`` into ``out[:n]``.

    Every layer is one matrix product over the ``n`` cells (``n`` at most the
    scratch's batch). The caller guarantees that no cell of the batch reads
    another's new state, so the result equals ``n`` single-cell updates. Only
    the float rounding may depend on the other cells of the batch. Reads the reset noise from
    ``z[:n]`` and returns the sum of the cells' gate values (0 without a gate).
    ``pointwise`` is the cache of :func:`pointwise_grid` (depthwise rules only).
    ``scratch`` comes from :func:`make_scratch`.
    """
    first, dw_weight, dw_bias, hid_weight, hid_bias = weights[0], weights[1], weights[2], weights[3], weights[4]
    up_weight, up_bias, rs_weight, rs_bias = weights[5], weights[6], weights[7], weights[8]
    x, _, hidden_a, hidden_b, z, out, gate = scratch
    height, width, d = src.shape
    n_hidden = hidden_a.shape[1]
    h = hidden_a[:n]
    h2 = hidden_b[:n]
    if config[CONFIG_PERCEPTION] == 0:
        for b in range(n):
            gather_neighbourhood(src, rows[b], cols[b], config, eps, shift, scale, x[b])
        matmul(x[:n], first, h)
        for b in range(n):
            row = h[b]
            own_term = term[rows[b], cols[b]]
            for o in range(n_hidden):
                value = row[o] + own_term[o]
                row[o] = np.float32(0.0) if value < 0.0 else value
    else:
        padding = config[CONFIG_PADDING]
        for b in range(n):
            row = h[b]
            row[:] = dw_bias
            for k in range(9):
                ni, nj = neighbour(rows[b], cols[b], k // 3 - 1, k % 3 - 1, height, width, padding)
                # The depthwise 3x3 pads the pointwise output, so a zero-padded
                # neighbour contributes nothing (not the pointwise bias).
                if ni < 0:
                    continue
                weight = dw_weight[k]
                values = pointwise[ni, nj]
                for o in range(n_hidden):
                    row[o] += weight[o] * values[o]
            for o in range(n_hidden):
                if row[o] < 0.0:
                    row[o] = 0.0
    for layer in range(hid_weight.shape[0]):
        matmul(h, hid_weight[layer], h2)
        relu_add(h2, hid_bias[layer])
        h, h2 = h2, h

    new = out[:n]
    matmul(h, up_weight, new)
    residual = config[CONFIG_RESIDUAL]
    for b in range(n):
        row = new[b]
        own = src[rows[b], cols[b]]
        for c in range(d):
            row[c] += up_bias[c]
            if residual:
                row[c] += own[c]

    gate_sum = 0.0
    if config[CONFIG_RESET_GATE]:
        gates = gate[:n]
        matmul(h, rs_weight, gates)
        for b in range(n):
            for c in range(d):
                value = np.float32(1.0) / (np.float32(1.0) + np.exp(-(gates[b, c] + rs_bias[c])))
                new[b, c] = value * z[b, c] + (np.float32(1.0) - value) * new[b, c]
                gate_sum += value
    return gate_sum


@serial_jit
def store_cells(state, rows, cols, n, config, eps, shift, scale, term, pointwise, weights, scratch):
    """Write ``out[:n]`` of ``scratch`` to cells ``(rows[b], cols[b])`` of ``state``, in place.

    For depthwise rules, also refresh those cells' entries of the pointwise
    cache from their new states (exact: each entry depends only on its own cell).
    """
    _, own, _, hidden_b, _, out, _ = scratch
    for b in range(n):
        state[rows[b], cols[b]] = out[b]
    if config[CONFIG_PERCEPTION] == 0:
        return
    pixel_norm = config[CONFIG_PIXEL_NORM]
    for b in range(n):
        load_normalized(state, rows[b], cols[b], pixel_norm, eps, shift, scale, own[b], 0)
    fresh = hidden_b[:n]
    matmul(own[:n], weights[0], fresh)
    for b in range(n):
        target = pointwise[rows[b], cols[b]]
        own_term = term[rows[b], cols[b]]
        row = fresh[b]
        for o in range(row.shape[0]):
            target[o] = row[o] + own_term[o]


@serial_jit
def independent_cells(i_a, j_a, i_b, j_b, height, width, padding):
    """Return True when neither cell's update reads the other, so that their order does not matter.

    A cell reads the cells at most one row and one column away (clamped at a
    replicate border, wrapped around a circular one). So two cells are
    independent when they are at least two rows or two columns apart. For
    circular padding the distances are taken around the torus.
    """
    dy = abs(i_a - i_b)
    dx = abs(j_a - j_b)
    if padding == 2:
        dy = min(dy, height - dy)
        dx = min(dx, width - dx)
    return dy >= 2 or dx >= 2

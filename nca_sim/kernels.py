"""The per-cell update network, normalization statistics, and the image encoder and decoder.

The state grid is ``(height, width, channels)`` float32, so one cell's state is a
contiguous vector. :func:`update_cell` computes one cell's new state from any grid:
a snapshot for the synchronous schedules, the live grid for the asynchronous ones.
The schedules in :mod:`nca_sim.schedules` decide which cells call it and when. It follows ``SegmentationNCA.step`` in ``nca_train/model.py``; the parity
tests in ``tests/test_engine_parity.py`` compare the two.

Weights are repacked from the rule file's PyTorch layouts to ``(in, out)``
float32 matrices, so the innermost loops run over contiguous output channels
and LLVM vectorizes them. One compiled kernel serves every architecture: the
variant travels as small integers in ``config`` (see :func:`config_array`), which
keeps the number of compiled specializations, and so the first-compile time, low.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from nca_sim.numba_config import serial_jit
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
    """A rule's update-network weights as float32 ``(out, in)`` matrices.

    Absent parts (the depthwise layer of a full perception, the reset gate of a
    rule without one) are zero arrays of the same rank, so every rule has the
    same Numba type.
    """

    first: np.ndarray  # full: (hidden, 9 * d), neighbour-major; depthwise: pointwise (hidden, d)
    depthwise_weight: np.ndarray  # (9, hidden)
    depthwise_bias: np.ndarray  # (hidden,)
    hidden_weight: np.ndarray  # (num_layers - 2, hidden, hidden)
    hidden_bias: np.ndarray  # (num_layers - 2, hidden)
    update_weight: np.ndarray  # (d, hidden)
    update_bias: np.ndarray  # (d,)
    reset_weight: np.ndarray  # (d, hidden)
    reset_bias: np.ndarray  # (d,)


def _f32(array) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32)


def pack_weights(rule: Rule) -> PackedWeights:
    """Repack ``rule``'s update network for :func:`update_cell`."""
    arch, weights = rule.architecture, rule.weights
    d, hidden = arch.state_channels, arch.hidden_channels
    if arch.perception == "full":
        # (hidden, d + c, 3, 3) -> (hidden, ky, kx, d) -> (hidden, 9 * d); neighbour k = 3 * ky + kx.
        first = weights["perceive.weight"][:, :d].transpose(0, 2, 3, 1).reshape(hidden, 9 * d)
        depthwise_weight = np.zeros((9, hidden), np.float32)
        depthwise_bias = np.zeros(hidden, np.float32)
    else:
        first = weights["pointwise.weight"][:, :d]
        depthwise_weight = weights["depthwise.weight"].reshape(hidden, 9).T
        depthwise_bias = weights["depthwise.bias"]
    layers = arch.num_layers - 2
    hidden_weight = np.zeros((layers, hidden, hidden), np.float32)
    hidden_bias = np.zeros((layers, hidden), np.float32)
    for i in range(layers):
        hidden_weight[i] = weights[f"hidden.{i}.weight"]
        hidden_bias[i] = weights[f"hidden.{i}.bias"]
    if arch.reset_gate:
        reset_weight, reset_bias = weights["reset.weight"], weights["reset.bias"]
    else:
        reset_weight, reset_bias = np.zeros((d, hidden), np.float32), np.zeros(d, np.float32)
    return PackedWeights(
        _f32(first),
        _f32(depthwise_weight),
        _f32(depthwise_bias),
        hidden_weight,
        hidden_bias,
        _f32(weights["update.weight"]),
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


@serial_jit
def dense_add(weight, x, acc):
    """``acc += weight @ x`` for ``weight`` of shape (out, in).

    Eight outputs per pass share each load of ``x``, and each of their dot
    products is a contiguous reduction that LLVM vectorizes (it needs the
    ``reassoc`` flag). In a microbenchmark on the benchmark machine (AMD EPYC,
    Numba 0.68) it ran 1.5 to 2 times as fast as the ``(in, out)`` form that
    updates an accumulator array once per input.
    """
    n_out, n_in = weight.shape
    o = 0
    while o + 8 <= n_out:
        s0 = np.float32(0.0)
        s1 = np.float32(0.0)
        s2 = np.float32(0.0)
        s3 = np.float32(0.0)
        s4 = np.float32(0.0)
        s5 = np.float32(0.0)
        s6 = np.float32(0.0)
        s7 = np.float32(0.0)
        w0 = weight[o]
        w1 = weight[o + 1]
        w2 = weight[o + 2]
        w3 = weight[o + 3]
        w4 = weight[o + 4]
        w5 = weight[o + 5]
        w6 = weight[o + 6]
        w7 = weight[o + 7]
        for c in range(n_in):
            value = x[c]
            s0 += w0[c] * value
            s1 += w1[c] * value
            s2 += w2[c] * value
            s3 += w3[c] * value
            s4 += w4[c] * value
            s5 += w5[c] * value
            s6 += w6[c] * value
            s7 += w7[c] * value
        acc[o] += s0
        acc[o + 1] += s1
        acc[o + 2] += s2
        acc[o + 3] += s3
        acc[o + 4] += s4
        acc[o + 5] += s5
        acc[o + 6] += s6
        acc[o + 7] += s7
        o += 8
    while o < n_out:
        total = np.float32(0.0)
        for c in range(n_in):
            total += weight[o, c] * x[c]
        acc[o] += total
        o += 1


@serial_jit
def relu(values):
    for o in range(values.shape[0]):
        if values[o] < 0.0:
            values[o] = 0.0


@serial_jit
def dense_add_pair(weight, x_a, x_b, acc_a, acc_b):
    """``acc_a += weight @ x_a`` and ``acc_b += weight @ x_b`` with one pass over ``weight``.

    Each weight load serves two cells. For the default rule's 3x3 layer, whose
    weights do not fit in the L1 cache, this took the microbenchmark from 22 to
    42 GMAC/s per core (AMD EPYC, Numba 0.68).
    """
    n_out, n_in = weight.shape
    o = 0
    while o + 8 <= n_out:
        a0 = np.float32(0.0)
        a1 = np.float32(0.0)
        a2 = np.float32(0.0)
        a3 = np.float32(0.0)
        a4 = np.float32(0.0)
        a5 = np.float32(0.0)
        a6 = np.float32(0.0)
        a7 = np.float32(0.0)
        b0 = np.float32(0.0)
        b1 = np.float32(0.0)
        b2 = np.float32(0.0)
        b3 = np.float32(0.0)
        b4 = np.float32(0.0)
        b5 = np.float32(0.0)
        b6 = np.float32(0.0)
        b7 = np.float32(0.0)
        w0 = weight[o]
        w1 = weight[o + 1]
        w2 = weight[o + 2]
        w3 = weight[o + 3]
        w4 = weight[o + 4]
        w5 = weight[o + 5]
        w6 = weight[o + 6]
        w7 = weight[o + 7]
        for c in range(n_in):
            value_a = x_a[c]
            value_b = x_b[c]
            a0 += w0[c] * value_a
            b0 += w0[c] * value_b
            a1 += w1[c] * value_a
            b1 += w1[c] * value_b
            a2 += w2[c] * value_a
            b2 += w2[c] * value_b
            a3 += w3[c] * value_a
            b3 += w3[c] * value_b
            a4 += w4[c] * value_a
            b4 += w4[c] * value_b
            a5 += w5[c] * value_a
            b5 += w5[c] * value_b
            a6 += w6[c] * value_a
            b6 += w6[c] * value_b
            a7 += w7[c] * value_a
            b7 += w7[c] * value_b
        acc_a[o] += a0
        acc_a[o + 1] += a1
        acc_a[o + 2] += a2
        acc_a[o + 3] += a3
        acc_a[o + 4] += a4
        acc_a[o + 5] += a5
        acc_a[o + 6] += a6
        acc_a[o + 7] += a7
        acc_b[o] += b0
        acc_b[o + 1] += b1
        acc_b[o + 2] += b2
        acc_b[o + 3] += b3
        acc_b[o + 4] += b4
        acc_b[o + 5] += b5
        acc_b[o + 6] += b6
        acc_b[o + 7] += b7
        o += 8
    while o < n_out:
        total_a = np.float32(0.0)
        total_b = np.float32(0.0)
        for c in range(n_in):
            total_a += weight[o, c] * x_a[c]
            total_b += weight[o, c] * x_b[c]
        acc_a[o] += total_a
        acc_b[o] += total_b
        o += 1


@serial_jit
def relu(values):
    for o in range(values.shape[0]):
        if values[o] < 0.0:
            values[o] = 0.0


def make_scratch(d: int, hidden: int):
    """Return the per-thread buffers of :func:`update_cell` and :func:`update_cell_pair`.

    Also callable inside kernels. Layout: ``x_a``, ``x_b`` (9 d: gathered
    neighbourhoods), ``hidden_a``, ``hidden_b``, ``hidden_c``, ``pointwise``
    (hidden), ``z_a``, ``z_b`` (d: reset noise), ``out_a``, ``out_b`` (d: new states).
    """
    return (
        np.zeros(9 * d, np.float32),
        np.zeros(9 * d, np.float32),
        np.zeros(hidden, np.float32),
        np.zeros(hidden, np.float32),
        np.zeros(hidden, np.float32),
        np.zeros(hidden, np.float32),
        np.zeros(d, np.float32),
        np.zeros(d, np.float32),
        np.zeros(d, np.float32),
        np.zeros(d, np.float32),
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
def depthwise_perception(src, i, j, config, eps, shift, scale, term, weights, x, pointwise, hidden_a):
    """Write the depthwise first layer's pre-activation of cell (i, j) into ``hidden_a``."""
    first, dw_weight, dw_bias = weights[0], weights[1], weights[2]
    height, width, d = src.shape
    # The depthwise 3x3 pads the pointwise output, so a zero-padded
    # neighbour contributes nothing (not the pointwise bias).
    # TODO: cache each cell's pointwise output and refresh it when the cell
    # updates; recomputing it for all 9 neighbours does 9 times the needed work.
    hidden_a[:] = dw_bias
    for k in range(9):
        ni, nj = neighbour(i, j, k // 3 - 1, k % 3 - 1, height, width, config[CONFIG_PADDING])
        if ni < 0:
            continue
        load_normalized(src, ni, nj, config[CONFIG_PIXEL_NORM], eps, shift, scale, x, 0)
        pointwise[:] = term[ni, nj]
        dense_add(first, x[:d], pointwise)
        for o in range(hidden_a.shape[0]):
            hidden_a[o] += dw_weight[k, o] * pointwise[o]


@serial_jit
def finish_cell(src, i, j, config, weights, hidden_a, hidden_b, z, gate_buffer, out):
    """Run the layers after the first on ``hidden_a`` (pre-activation) and write the new state to ``out``.

    Returns the sum of the cell's reset-gate values (0 without a gate).
    ``hidden_a`` and ``hidden_b`` are overwritten.
    """
    hid_weight, hid_bias = weights[3], weights[4]
    up_weight, up_bias, rs_weight, rs_bias = weights[5], weights[6], weights[7], weights[8]
    d = src.shape[2]
    relu(hidden_a)
    for layer in range(hid_weight.shape[0]):
        hidden_b[:] = hid_bias[layer]
        dense_add(hid_weight[layer], hidden_a, hidden_b)
        relu(hidden_b)
        hidden_a, hidden_b = hidden_b, hidden_a

    out[:] = up_bias
    dense_add(up_weight, hidden_a, out)
    if config[CONFIG_RESIDUAL]:
        for c in range(d):
            out[c] += src[i, j, c]

    gate_sum = 0.0
    if config[CONFIG_RESET_GATE]:
        gate_buffer[:d] = rs_bias
        dense_add(rs_weight, hidden_a, gate_buffer)
        for c in range(d):
            gate = np.float32(1.0) / (np.float32(1.0) + np.exp(-gate_buffer[c]))
            out[c] = gate * z[c] + (np.float32(1.0) - gate) * out[c]
            gate_sum += gate
    return gate_sum


@serial_jit
def update_cell(src, i, j, config, eps, shift, scale, term, weights, scratch):
    """Compute cell (i, j)'s next state from grid ``src`` into ``scratch[8]`` (``out_a``).

    Reads the reset noise from ``scratch[6]`` (``z_a``). Returns the sum of the
    cell's gate values. ``scratch`` comes from :func:`make_scratch`.
    """
    x_a, _, hidden_a, hidden_b, _, pointwise, z_a, _, out_a, _ = scratch
    if config[CONFIG_PERCEPTION] == 0:
        gather_neighbourhood(src, i, j, config, eps, shift, scale, x_a)
        hidden_a[:] = term[i, j]
        dense_add(weights[0], x_a, hidden_a)
    else:
        depthwise_perception(src, i, j, config, eps, shift, scale, term, weights, x_a, pointwise, hidden_a)
    return finish_cell(src, i, j, config, weights, hidden_a, hidden_b, z_a, x_a, out_a)


@serial_jit
def update_cell_pair(src, i_a, j_a, i_b, j_b, config, eps, shift, scale, term, weights, scratch):
    """Compute two cells' next states from ``src`` into ``out_a`` and ``out_b`` of ``scratch``.

    The result equals two :func:`update_cell` calls up to float rounding: LLVM
    may order the sums of the two cells differently, so the last bit of a cell's
    state can depend on its partner. The caller guarantees that neither cell
    reads the other's new state. Reads the
    noise from ``z_a`` and ``z_b``. Returns the sum of both cells' gate values.
    """
    x_a, x_b, hidden_a, hidden_b, hidden_c, pointwise, z_a, z_b, out_a, out_b = scratch
    if config[CONFIG_PERCEPTION] == 0:
        gather_neighbourhood(src, i_a, j_a, config, eps, shift, scale, x_a)
        gather_neighbourhood(src, i_b, j_b, config, eps, shift, scale, x_b)
        hidden_a[:] = term[i_a, j_a]
        hidden_c[:] = term[i_b, j_b]
        dense_add_pair(weights[0], x_a, x_b, hidden_a, hidden_c)
    else:
        depthwise_perception(src, i_a, j_a, config, eps, shift, scale, term, weights, x_a, pointwise, hidden_a)
        depthwise_perception(src, i_b, j_b, config, eps, shift, scale, term, weights, x_b, pointwise, hidden_c)
    gate_sum = finish_cell(src, i_a, j_a, config, weights, hidden_a, hidden_b, z_a, x_a, out_a)
    gate_sum += finish_cell(src, i_b, j_b, config, weights, hidden_c, hidden_b, z_b, x_b, out_b)
    return gate_sum


@serial_jit
def reads_cell(i, j, other_i, other_j, height, width, padding):
    """Return True when the update of cell (i, j) reads cell (other_i, other_j)."""
    for k in range(9):
        ni, nj = neighbour(i, j, k // 3 - 1, k % 3 - 1, height, width, padding)
        if ni == other_i and nj == other_j:
            return True
    return False


@serial_jit
def independent_cells(i_a, j_a, i_b, j_b, height, width, padding):
    """Return True when updating the two cells in either order gives the same result."""
    if reads_cell(i_a, j_a, i_b, j_b, height, width, padding):
        return False
    return not reads_cell(i_b, j_b, i_a, j_a, height, width, padding)

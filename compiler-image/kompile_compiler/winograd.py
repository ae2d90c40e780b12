"""Winograd convolutions for the CPU: 3x3 stride-1 convolutions with a quarter of the multiplies.

Tuned direct convolutions already run at 170-220 GFLOPS on the 2 cores here (ResNet-50 in NHWC,
x86-avx512, `bench/kernel_times.py`), about nine tenths of what the cores can do, so their time only
falls with fewer multiplies. Winograd's F(m x m, 3 x 3) computes each m x m output tile from an
(m+2) x (m+2) input tile in the transformed domain, where the convolution is one element-wise
product per point, summed over the input channels: a batch of (m+2)^2 matrix products. With m = 4
that is 36 products of P x CI by CI x CO for P tiles, against 9 x 16 = 144 multiplies a tile
done directly. The filters are transformed once at compile time (they are constants), and the
input and output transforms are small constant-matrix sums, which MetaSchedule schedules with
its own CPU rules for them (the blocks' `schedule_rule`). Error: a few float32 ulps more than
the direct form, well inside the parity gate.

Whether it is faster depends on the shape: after one round of tuning on 2 cores (x86-avx512),
ResNet-50's 28 x 28 x 128 convolution ran 1.53x faster than its direct form, its 56 x 56 x 64
one 1.14x and its 14 x 14 x 256 one 1.05x. So a compile takes this form for a convolution only
where the tuning records say it is faster (`tuning.choose`), and tuning it is asked for
(`bench/tune.py --winograd`).
"""

from __future__ import annotations

import math
import re

import numpy as np

NAME = "conv2d_winograd"


def tile(h: int, w: int) -> int:
    """m of F(m x m, 3 x 3) for an h x w image: 4 (a quarter of the multiplies) where the tiles
    are many, 2 (4/9 of them) on small images, where the padding to whole 4 x 4 tiles and the
    transforms cost more than they save (ResNet-50's 14 x 14 x 256 convolution after one round
    of tuning: 1.05x the direct one's speed with m = 2, 0.94x with m = 4). Larger tiles lose
    float32 accuracy."""
    return 4 if min(h, w) >= 16 else 2


def shape_key(data_shape, weight_shape) -> str:
    """A convolution's key, `NxHxWxCIxCO`: what names its kernel, and what a choice is made for."""
    n, h, w, ci = data_shape
    return "x".join(str(int(d)) for d in (n, h, w, ci, weight_shape[3]))


def kernel_name(key: str, m: int) -> str:
    """The name of the Winograd kernel for `key`, which the fused kernels that hold it begin with.
    The tile ends it, a single digit: a name TVM makes unique gets digits appended."""
    return f"{NAME}_{key}_f{m}"


def keys_in(kernel: str) -> set[str]:
    """The convolutions a (fused) kernel computes in Winograd form, from its name."""
    return set(re.findall(rf"{NAME}_(\d+x\d+x\d+x\d+x\d+)_f\d", kernel))


def eligible(call) -> str | None:
    """The key of a Relax `nn.conv2d` call that Winograd computes exactly as it is, else None:
    NHWC data, constant HWIO float32 3x3 filters, stride 1, no dilation, one group, and one pixel of
    padding on every side (the output as large as the input)."""
    import tvm

    attrs = call.attrs
    data, weight = call.args
    if not isinstance(weight, tvm.ir.GenericConst):
        return None
    if (attrs.data_layout, attrs.kernel_layout, attrs.out_layout or attrs.data_layout) != ("NHWC", "HWIO", "NHWC"):
        return None
    ints = lambda values: [int(v) for v in values]  # noqa: E731
    if ints(attrs.strides) != [1, 1] or ints(attrs.dilation) != [1, 1] or int(attrs.groups) != 1:
        return None
    if ints(attrs.padding) != [1, 1, 1, 1]:
        return None
    shape = getattr(data.ty, "shape", None)
    if shape is None or not all(isinstance(d, int) or hasattr(d, "value") for d in shape):
        return None
    if tuple(weight.value.shape[:2]) != (3, 3) or data.ty.dtype != "float32" or weight.value.dtype != "float32":
        return None
    if attrs.out_dtype not in (None, "", "float32"):
        return None
    return shape_key([int(d) for d in shape], weight.value.shape)


def keys(mod) -> set[str]:
    """The keys of every convolution in `mod` (Relax, before legalization) Winograd can compute."""
    from kompile_compiler import rewrites

    return {k for call in rewrites.calls(mod, "relax.nn.conv2d") if (k := eligible(call)) is not None}


def apply(mod, chosen: set[str]):
    """`mod` (Relax, its constants folded, before legalization) with the convolutions whose keys
    are in `chosen` as calls of a Winograd kernel, each with its filters transformed here."""
    import tvm
    from tvm import relax

    from kompile_compiler import rewrites

    conv2d = tvm.ir.Op.get("relax.nn.conv2d")

    @relax.expr_functor.mutator
    class Rewriter(relax.PyExprMutator):
        def visit_call_(self, call):
            call = self.visit_expr_post_order(call)
            if not call.op.same_as(conv2d):
                return call
            if (key := eligible(call)) is None or key not in chosen:
                return call
            _, h, w, _ = (int(d) for d in call.args[0].ty.shape)
            m = tile(h, w)
            filters = relax.const(transformed_filters(call.args[1].value.numpy(), m))
            return self.builder_.call_te(compute, call.args[0], filters, m, primfunc_name_hint=kernel_name(key, m))

    return rewrites.every_function(Rewriter(mod), mod)


def _matrices(m: int):
    """F(m x m, 3 x 3)'s output (A), input (B) and filter (G) transforms, as TOPI computes them
    for its own Winograd kernels, so that the filters transformed here match the input and output
    transforms of `compute`."""
    from tvm.topi.nn.winograd_util import _cook_toom_convolution, _interpolation_points

    return _cook_toom_convolution(_interpolation_points(m + 1), m, 3)


def transformed_filters(hwio: np.ndarray, m: int) -> np.ndarray:
    """HWIO 3x3 filters in the transformed domain, G w G^T, laid out (alpha, alpha, CI, CO): the
    output channels innermost, the axis the products are vectorised along."""
    _, _, g = _matrices(m)
    return np.einsum("ak,bl,klio->abio", g, g, hwio.astype(np.float64)).astype(hwio.dtype)


def compute(data, filters, m: int):
    """The Winograd convolution in TE: data NHWC, `filters` from `transformed_filters`."""
    from tvm import te, topi

    n, h, w, ci = (int(d) for d in data.shape)
    alpha, co = int(filters.shape[0]), int(filters.shape[3])
    a_matrix, b_matrix, _ = _matrices(m)
    a, b = (_constant_matrix(x.astype(str(data.dtype)), name) for x, name in ((a_matrix, "A"), (b_matrix, "B")))
    rows, cols = math.ceil(h / m), math.ceil(w / m)
    tiles = n * rows * cols
    # One pixel of padding before; after, enough for the last tile's full alpha x alpha window.
    after = (0, rows * m + 1 - h, cols * m + 1 - w, 0)
    padded = topi.nn.pad(data, (0, 1, 1, 0), after, name="data_pad", attrs={"schedule_rule": "None"})
    tile = te.compute(
        (alpha, alpha, tiles, ci),
        lambda e, u, p, c: padded[p // (rows * cols), (p // cols) % rows * m + e, p % cols * m + u, c],
        name="input_tile",
        attrs={"schedule_rule": "None"},  # inlined by the data_pack rule
    )
    packed = _two_sided(tile, b, alpha, "data_pack")
    k = te.reduce_axis((0, ci), "ci")
    product = te.compute(
        (alpha, alpha, tiles, co),
        lambda e, u, p, o: te.sum(packed[e, u, p, k] * filters[e, u, k, o], axis=[k]),
        name="bgemm",
        attrs={"meta_schedule.write_cache_level": [2]},
    )
    inverse = _two_sided(product, a, m, "inverse")
    return te.compute(
        (n, h, w, co),
        lambda b_, y, x, o: inverse[y % m, x % m, b_ * rows * cols + y // m * cols + x // m, o],
        name=NAME,
    )


def _constant_matrix(matrix: np.ndarray, name: str):
    """`matrix` as a TE tensor whose entries are constants once its indices are: a Select on the
    row, then on the column, of its nonzero entries only. TOPI's `const_matrix` chains a Select on
    (i % rows == r and j % cols == c) for every entry; in the unrolled transforms of F(4x4, 3x3)
    that is 1296 chains of 36, which TVM's simplifier took a second a kernel to fold."""
    from tvm import te, tirx

    dtype = str(matrix.dtype)

    def entry(i, j):
        value = tirx.const(0.0, dtype)
        for r, row in enumerate(matrix):
            in_row = tirx.const(0.0, dtype)
            for c, x in enumerate(row):
                if x != 0:
                    in_row = tirx.Select(j == c, tirx.const(x, dtype), in_row)
            value = tirx.Select(i == r, in_row, value)
        return value

    return te.compute(matrix.shape, entry, name=name, attrs={"const_matrix": True, "schedule_rule": "None"})


def _two_sided(x, matrix, extent: int, name: str):
    """M^T x M for each (tile, channel) of `x` (alpha, alpha, tiles, channels): the input
    transform with B, or the output transform with A. `name` picks MetaSchedule's CPU rule for it."""
    from tvm import te

    alpha, _, tiles, channels = (int(d) for d in x.shape)
    ra, rb = te.reduce_axis((0, alpha), "r_a"), te.reduce_axis((0, alpha), "r_b")
    return te.compute(
        (extent, extent, tiles, channels),
        lambda i, j, p, c: te.sum(x[ra, rb, p, c] * matrix[ra, i] * matrix[rb, j], axis=[ra, rb]),
        name=name,
        attrs={"schedule_rule": f"conv2d_nhwc_winograd_{name}"},
    )

"""The AVX512-BF16 dot-product intrinsic: which targets get it, the kernels it fits, that it
computes what the kernel computes, and that tuning a BF16 model for such a target puts
`vdpbf16ps` in the artifact.

The runs need a CPU with AVX512-BF16 (this project's AMD EPYC has it); elsewhere they skip.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from kompile.api import Precision
from kompile_compiler import intrinsics, packaging, targets, tuning
from tests.compiler import models
from tests.compiler.models import compile_onnx

BF16_CPU = pytest.mark.skipif(
    "avx512bf16" not in targets.host_cpu_flags(), reason="this CPU has no AVX512-BF16 (vdpbf16ps)"
)


def _target(mcpu: str, **extra):
    import tvm

    return tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": mcpu, **extra})


@pytest.mark.parametrize(
    ("mcpu", "mattr", "has"),
    [
        ("cooperlake", None, True),
        ("sapphirerapids", None, True),
        ("znver4", None, True),
        ("skylake-avx512", None, False),
        ("core-avx2", None, False),
        ("cooperlake", ["-avx512bf16"], False),  # a VM that hides the feature
    ],
)
def test_the_intrinsic_is_offered_where_the_cpu_has_the_instruction(mcpu, mattr, has):
    target = _target(mcpu, **({"mattr": mattr} if mattr else {}))
    assert intrinsics.for_target(target) == ([intrinsics.BF16_DOT_16x2] if has else [])
    assert (tuning.search_space(target) == "post-order-apply") is not has


def _matmul(k: int, n: int, dtype="bfloat16", m: int = 4, constant_weights=True):
    """A TE matmul C[m, n] = sum_k float(A[m, k]) * float(W[k, n]), W layout-free (a constant),
    as a schedule on its only block."""
    import tvm
    from tvm import s_tir, te

    a = te.placeholder((m, k), dtype, name="a")
    w = te.placeholder((k, n), dtype, name="w")
    r = te.reduce_axis((0, k), "r")
    c = te.compute((m, n), lambda i, j: te.sum(a[i, r].astype("float32") * w[r, j].astype("float32"), axis=r), name="c")
    func = te.create_prim_func([a, w, c])
    if constant_weights:
        func = func.with_attr("layout_free_buffers", [1])
    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    return sch, sch.get_sblock("c")


def _conv_nhwc(ci: int, co: int, padded=False):
    """A 3x3 NHWC convolution with layout-free HWIO weights, as Relax legalizes one (its
    padding a stage of its own), as a schedule on its convolution block."""
    import tvm
    from tvm import s_tir, te, tirx

    x = te.placeholder((1, 8, 8, ci), "bfloat16", name="x")
    w = te.placeholder((3, 3, ci, co), "bfloat16", name="w")
    source, size = x, 6
    if padded:
        inside = lambda h, v: tirx.all(h >= 1, h < 9, v >= 1, v < 9)  # noqa: E731
        source = te.compute(
            (1, 10, 10, ci),
            lambda n, h, v, c: tirx.if_then_else(inside(h, v), x[n, h - 1, v - 1, c], tirx.const(0, "bfloat16")),
            name="pad",
        )
        size = 8
    rh, rw, rc = te.reduce_axis((0, 3), "rh"), te.reduce_axis((0, 3), "rw"), te.reduce_axis((0, ci), "rc")
    y = te.compute(
        (1, size, size, co),
        lambda n, h, v, o: te.sum(
            source[n, h + rh, v + rw, rc].astype("float32") * w[rh, rw, rc, o].astype("float32"), axis=[rh, rw, rc]
        ),
        name="y",
    )
    func = te.create_prim_func([x, w, y]).with_attr("layout_free_buffers", [1])
    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    return sch, sch.get_sblock("y")


def test_the_weights_it_packs_are_found_in_a_matmul_and_a_nhwc_convolution():
    # (read index, n dim, k dim, rank): W[k, n] and W[kh, kw, ci, co]
    assert intrinsics._bf16_dot_weight(*_matmul(64, 32)) == (1, 1, 0, 2)
    assert intrinsics._bf16_dot_weight(*_conv_nhwc(16, 32)) == (1, 3, 2, 4)


@pytest.mark.parametrize(
    "case",
    [
        lambda: _matmul(64, 32, dtype="float32"),  # FP32: nothing to pack
        lambda: _matmul(64, 32, constant_weights=False),  # attention's Q K^T: no weights to repack
        lambda: _matmul(64, 24),  # 24 outputs: not whole groups of 16
        lambda: _matmul(63, 32),  # an odd reduction: not whole pairs
        lambda: _conv_nhwc(3, 32),  # an image's 3 channels: the first convolution of a CNN
    ],
)
def test_kernels_it_does_not_fit_are_left_to_the_other_rules(case):
    sch, block = case()
    assert intrinsics._bf16_dot_weight(sch, block) is None
    before = sch.mod
    assert intrinsics.tiling_rule(intrinsics.BF16_DOT_16x2).apply(sch, block)[0].mod.same_as(before)


# Seeds whose draws inlined a padded convolution's padding into two of its three design spaces
# (3: one of three) when RandomComputeLocation could still draw "inline" for it.
@pytest.mark.parametrize("seed", [3, 18])
@pytest.mark.parametrize("case", [lambda: _matmul(64, 32), lambda: _conv_nhwc(16, 32, padded=True)])
def test_the_design_spaces_of_a_kernel_it_fits_are_tensorized(case, seed):
    """MetaSchedule's design spaces for the target, through its postprocessors, call the
    intrinsic. A padded convolution's too: its padding, inlined into it, would not match."""
    from tvm.s_tir import meta_schedule as ms

    sch, _ = case()
    target = _target("cooperlake", **{"num-cores": 2})
    space = tuning.search_space(target)
    context = ms.TuneContext(mod=sch.mod, target=target, space_generator=space, task_name="t", rand_state=seed)
    spaces = context.space_generator.generate_design_space(sch.mod)
    assert len(spaces) > 1  # a space per reuse level of the accumulators
    for space in spaces:
        assert all(postproc.apply(space) for postproc in context.space_generator.postprocs)
        assert "kompile_dpbf16ps" in space.mod.script(), space.trace


M, N, K = 8, 64, 96


def _packed_matmul():
    """C[m, n] = sum_k float(A[m, k]) * float(W[n/16, k/2, n%16, k%2]): the weights in the pairs
    the intrinsic reads, tiled for it by hand; the schedule and its blockized 16 x 2 block."""
    from tvm import s_tir, te

    a = te.placeholder((M, K), "bfloat16", name="a")
    w = te.placeholder((N // 16, K // 2, 16, 2), "bfloat16", name="w")
    r = te.reduce_axis((0, K), "r")
    c = te.compute(
        (M, N),
        lambda i, j: te.sum(a[i, r].astype("float32") * w[j // 16, r // 2, j % 16, r % 2].astype("float32"), axis=r),
        name="c",
    )
    sch = s_tir.Schedule(te.create_prim_func([a, w, c]))
    i, j, k = sch.get_loops(sch.get_sblock("c"))
    jo, ji = sch.split(j, [None, 16])
    ko, ki = sch.split(k, [None, 2])
    sch.reorder(i, ko, jo, ji, ki)
    return sch, sch.blockize(ji), (i, ko, jo)


def _run(lib):
    import ml_dtypes
    import tvm

    rng = np.random.default_rng(0)
    an = rng.standard_normal((M, K)).astype(ml_dtypes.bfloat16)
    wn = rng.standard_normal((K, N)).astype(ml_dtypes.bfloat16)
    packed = np.ascontiguousarray(wn.T.reshape(N // 16, 16, K // 2, 2).transpose(0, 2, 1, 3))
    dev = tvm.cpu()
    out = tvm.runtime.tensor(np.zeros((M, N), "float32"), dev)
    lib(tvm.runtime.tensor(an, dev), tvm.runtime.tensor(packed, dev), out)
    return out.numpy(), an.astype("float32") @ wn.astype("float32")


def test_the_host_target_has_the_instruction_sets_of_this_cpu_not_of_its_model_name():
    """A virtual machine may report an older CPU model than it runs on (Rocket Lake for a CPU
    with AMX and AVX512-BF16) or hide features its model has: the host target has exactly the
    instruction sets that LLVM reads from CPUID and /proc/cpuinfo lists, whatever the model."""
    import tvm
    import tvm_ffi
    from tvm.target import codegen

    host = tvm_ffi.get_global_func("tvm.codegen.llvm.GetHostCPUFeatures")()
    flags = targets.host_cpu_flags()
    isa = lambda features: {str(f) for f in features if targets.ISA_FEATURE.match(str(f))}  # noqa: E731
    has = {f for f in isa(f for f, on in host.items() if on) if targets._norm(f) in flags}
    built_for = isa(codegen.llvm_get_cpu_features(tvm.target.Target(targets.host_target().tvm)))
    assert has <= built_for
    assert all(targets._norm(f) in flags for f in built_for)


@BF16_CPU
def test_the_intrinsic_computes_the_bf16_matmul():
    """Tensorized by hand: the result is the float32 sum of bf16 products, within float32
    rounding of numpy's."""
    import tvm

    intrinsics.register()
    sch, block, (i, ko, _) = _packed_matmul()
    sch.parallel(i)
    sch.decompose_reduction(block, ko)
    sch.tensorize(block, intrinsics.BF16_DOT_16x2)
    lib = tvm.compile(sch.mod, target=tvm.target.Target(targets.host_target().tvm))
    assert "vdpbf16ps" in lib.mod.inspect_source("asm")
    got, expected = _run(lib)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_a_loop_of_intrinsic_calls_is_unrolled_not_vectorized():
    """MetaSchedule vectorizes the innermost spatial loops, here the one around the 16-lane
    intrinsic, and TVM's VectorizeLoop cannot build that: the postprocessor unrolls it first."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    intrinsics.register()
    target = _target("cooperlake")
    built = {}
    for unrolled in (False, True):
        sch, block, (_, _, jo) = _packed_matmul()
        sch.annotate(block, intrinsics.AUTO_TENSORIZE, intrinsics.BF16_DOT_16x2)
        sch.vectorize(jo)
        postprocs = [ms.postproc.RewriteReductionBlock(), ms.postproc.RewriteTensorize(vectorize_init_loop=True)]
        if unrolled:
            postprocs.insert(1, intrinsics.unroll_around_intrinsics())
        assert all(p.apply(sch) for p in postprocs)
        try:
            built[unrolled] = tvm.compile(sch.mod, target=target)
        except tvm.error.InternalError as err:
            built[unrolled] = str(err)
    assert "Cannot broadcast" in built[False]
    assert "vdpbf16ps" in built[True].mod.inspect_source("asm")
    if "avx512bf16" in targets.host_cpu_flags():
        got, expected = _run(built[True])
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


@BF16_CPU
def test_a_tuned_bf16_compile_multiplies_with_vdpbf16ps(tmp_path):
    """A few trials on the dense layer, for this CPU: the record MetaSchedule keeps tensorizes
    with the intrinsic, the compile applies it and repacks the weights, and the artifact passes
    the BF16 parity gate against onnxruntime's FP32. Before the intrinsic the kernel had no
    vdpbf16ps at all."""
    model = models.dense(tmp_path / "dense.onnx")
    _, manifest = compile_onnx(
        model,
        {"x": [4, 64]},
        tmp_path / "work",
        trials=8,
        max_trials_per_task=8,
        precision=Precision.BF16,
        output_dir=tmp_path / "artifact",
    )
    assert manifest["tuning"]["kernelsFromRecords"] >= 1, manifest["tuning"]
    assert manifest["parity"]["rtol"] == 5e-2  # BF16's gate, which the compile passed (it raises otherwise)
    code = subprocess.run(
        ["objdump", "-d", str(tmp_path / "artifact" / packaging.LIBRARY)], capture_output=True, text=True, check=True
    ).stdout
    assert "vdpbf16ps" in code


def test_a_fresh_process_takes_the_shipped_records_that_tensorize(tmp_path):
    """A compile pod reads its records before it tunes or schedules anything. TVM cannot parse
    a trace naming an intrinsic it has not registered, and the bundle holding it was dropped
    whole as damaged: pods built ResNet-50 BF16 for x86-avx512-bf16 without one vdpbf16ps
    (82 ms; 35 with the records). In a process of its own, as the pod's."""
    key = "llvm-x86_64-linux-gnu-cooperlake"
    script = (
        "import pathlib, sys; from kompile_compiler import tuning;"
        "print(tuning.gather(pathlib.Path(sys.argv[1]), sys.argv[2], None, print))"
    )
    ran = subprocess.run([sys.executable, "-c", script, str(tmp_path), key], capture_output=True, text=True, check=True)
    bundles = [json.loads(p.read_bytes()) for p in sorted((tuning.SHIPPED / key).glob("*.json"))]
    assert any(intrinsics.BF16_DOT_16x2 in line for b in bundles for line in b["records"])
    assert "skipped" not in ran.stdout
    assert int(ran.stdout.split()[-1]) == sum(len(b["records"]) for b in bundles)


def _classifier(conv_out: int, fc_in: int, fc_out: int, groups: int = 1, channels: int = 8, dtype="bfloat16"):
    """A NHWC convolution (3x3, `channels` in) into a matmul, both on constant `dtype` weights,
    as a Relax module."""
    import ml_dtypes
    from tvm import relax

    rng = np.random.default_rng(1)
    numpy_dtype = np.dtype(getattr(ml_dtypes, dtype, dtype))
    weights = lambda *shape: relax.const(rng.standard_normal(shape).astype(numpy_dtype), dtype)  # noqa: E731
    builder = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 3, 3, channels), dtype))
    with builder.function("main", [x]):
        with builder.dataflow():
            y = builder.emit(
                relax.op.nn.conv2d(
                    x,
                    weights(3, 3, channels // groups, conv_out),
                    padding=1,
                    groups=groups,
                    data_layout="NHWC",
                    kernel_layout="HWIO",
                    out_layout="NHWC",
                    out_dtype="float32",
                )
            )
            flat = builder.emit(relax.op.reshape(relax.op.astype(y, dtype), (1, 9 * conv_out)))
            head = builder.emit(relax.op.matmul(flat, weights(fc_in, fc_out), out_dtype="float32"))
            out = builder.emit_output(head)
        builder.emit_func_output(out)
    return builder.get()


def _run_relax(mod, x):
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


def test_output_channels_are_padded_to_whole_groups_of_16():
    """A classifier's 1000 outputs do not split into the instruction's groups of 16; zero
    weights make up the next group and a slice takes the outputs back: the same numbers."""
    import ml_dtypes

    from kompile_compiler import rewrites

    mod = _classifier(conv_out=24, fc_in=9 * 24, fc_out=40)
    padded = intrinsics.pad_channels(mod)
    assert _widths(padded) == [32, 48]
    assert [list(c.ty.shape) for c in rewrites.calls(padded, "relax.strided_slice")] == [[1, 3, 3, 24], [1, 40]]
    x = np.random.default_rng(2).standard_normal((1, 3, 3, 8)).astype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(_run_relax(padded, x), _run_relax(mod, x))


def _widths(mod) -> list[int]:
    from kompile_compiler import rewrites

    return [int(c.args[1].ty.shape[-1]) for op in ("relax.nn.conv2d", "relax.matmul") for c in rewrites.calls(mod, op)]


@pytest.mark.parametrize(
    ("make", "widths"),
    [
        (lambda: _classifier(conv_out=32, fc_in=9 * 32, fc_out=64), [32, 64]),  # whole groups already
        # grouped: each group's channels would need their own padding; the matmul still gets its
        (lambda: _classifier(conv_out=24, fc_in=9 * 24, fc_out=40, groups=2), [24, 48]),
    ],
)
def test_only_kernels_padding_fits_are_padded(make, widths):
    assert _widths(intrinsics.pad_channels(make())) == widths


@pytest.mark.parametrize(("mcpu", "conv_width"), [("skylake-avx512", 32), ("core-avx2", 24), ("cooperlake", 32)])
def test_float32_convolutions_get_whole_vectors_of_output_channels(mcpu, conv_width):
    """In float32 a convolution's output channels are padded to the target's vector width (16
    with AVX-512, 8 with AVX2), as the compile prepares a model; its matmul keeps its shape (and
    its records), the image's 3 channels too (no pairs in float32): the same numbers."""
    from kompile_compiler import rewrites

    mod = _classifier(conv_out=20, fc_in=9 * 20, fc_out=40, channels=3, dtype="float32")
    padded = tuning.prepare(mod, _target(mcpu)).folded
    assert _widths(padded) == [conv_width, 40]
    (conv,) = rewrites.calls(padded, "relax.nn.conv2d")
    assert int(conv.args[0].ty.shape[-1]) == 3
    x = np.random.default_rng(4).standard_normal((1, 3, 3, 3)).astype("float32")
    np.testing.assert_allclose(_run_relax(padded, x), _run_relax(mod, x), rtol=1e-5, atol=1e-5)


def test_an_image_s_three_channels_get_a_fourth_of_zeros():
    """The instruction multiplies pairs of input channels; an image's first convolution has 3.
    A zero channel in the data and in the weights makes two pairs: the same numbers."""
    import ml_dtypes

    from kompile_compiler import rewrites

    mod = _classifier(conv_out=32, fc_in=9 * 32, fc_out=16, channels=3)
    padded = intrinsics.pad_channels(mod)
    (conv,) = rewrites.calls(padded, "relax.nn.conv2d")
    assert [int(d) for d in conv.args[1].ty.shape] == [3, 3, 4, 32]
    assert [int(d) for d in conv.args[0].ty.shape] == [1, 3, 3, 4]
    assert not rewrites.calls(padded, "relax.strided_slice")  # the outputs were whole groups already
    x = np.random.default_rng(3).standard_normal((1, 3, 3, 3)).astype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(_run_relax(padded, x), _run_relax(mod, x))

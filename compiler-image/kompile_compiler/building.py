"""A Relax module built for the CPU with its kernels compiled on every core the compile has.

`tvm.compile` hands all of a model's kernels to one `tvm.tirx.build`: one thread lowers them and
LLVM compiles them as one module. Tuned kernels are long once unrolled (SqueezeNet's two
F(4x4, 3x3) Winograd kernels take a second each to lower and compile), so a compile with
records spent most of its time there on one of its cores. Here each kernel is built to an LLVM
module and its object file on its own, the costliest first (a rough cost: their printed size
times their unrolling), on as many threads as the compile has cores (TVM releases the GIL in
C++), and the VM executable links them as `tvm.compile` would have. One object file a kernel
costs little (DenseNet-121's 190: 19.0 s against 18.5 s in two groups) and lets a shared cache
keep each kernel's object (`kernel_cache`). The VM pipeline itself is TVM's own, run the way
`relax.build` runs it, with that module's private helpers (`_vmcodegen`, `VMLink`): TVM is
pinned, and a change there fails every compile test.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Every kernel TVM builds checks, at each call, the shape, dtype, strides and device of each of
# its arguments: in DenseNet-121's 190 kernels that was half of what LLVM compiled (20.8 s of
# lowering and code generation on one core, 11.4 s without). The VM calls the kernels only with
# tensors it allocated to the shapes Relax inferred, and checks the model's own inputs itself
# (`vm.builtin.check_tensor_info`, which this setting leaves in place), so the kernels' checks
# could only fail on a bug of TVM's; they are left out.
CONFIG = {"tirx.disable_assert": True}


def _cost(text: str) -> int:
    """A kernel's rough build cost, from its printed TIR: its size, more where it asks to be unrolled."""
    return len(text) * (1 + text.count("T.unroll") + text.count("pragma_auto_unroll_max_step"))


def build(mod, target, threads: int, objects: Path, cache=None):
    """`mod` (Relax, its kernels scheduled) compiled to a Relax VM executable, as `tvm.compile`.
    The object files of all kernels but one are written to the folder `objects`, which must
    outlive the executable's `export_library`; with a `kernel_cache.KernelCache`, those it has
    are taken from it and the others stored there."""
    import tvm
    from tvm import relax
    from tvm.relax import vm_build

    from kompile_compiler import kernel_cache

    with target:
        mod = relax.get_pipeline("default")(mod)
    attrs = dict(mod.attrs) if mod.attrs else {}
    builder = relax.ExecBuilder()
    mod = vm_build._vmcodegen(builder, mod, "bytecode")
    kernels = vm_build._filter_tir(mod)
    params = dict(attrs.get("const_name_to_constant", {}))
    external = list(attrs.get("external_mods", []))
    if kernels is None:
        return vm_build._vmlink(builder=builder, target=target, tir_mod=None, ext_libs=external, params=params)
    kernels = vm_build._auto_attach_system_lib_prefix(kernels, target, None)
    funcs = dict(kernels.functions_items())
    scripts = {gv: func.script() for gv, func in funcs.items()}
    costs = {gv: _cost(text) for gv, text in scripts.items()}
    # export_library writes the one LLVM module it is given itself, on one thread, with the
    # VM's own code and weights packed beside it: that module holds only the cheapest kernel.
    cheapest = min(costs, key=costs.get)
    order = [cheapest, *sorted((gv for gv in funcs if gv != cheapest), key=lambda gv: -costs[gv])]
    objects.mkdir(parents=True, exist_ok=True)
    context = tvm.transform.PassContext.current()  # a thread's own is TVM's default: pass the caller's on

    def compile_kernel(index_gv):
        index, gv = index_gv
        attrs = funcs[gv].attrs
        symbol = str(attrs["global_symbol"]) if attrs is not None and "global_symbol" in attrs else gv.name_hint

        def compiled():
            with context:
                return tvm.tirx.build(tvm.IRModule({gv: funcs[gv]}, attrs=kernels.attrs), target=target)

        if index == 0:
            return compiled()
        path = objects / f"kernel{index}.o"

        def write(path):
            compiled().write_to_file(str(path))

        def load(path):
            return tvm.runtime.load_static_library(str(path), [symbol])

        if cache is None:
            write(path)
            return load(path)
        with context:
            key = kernel_cache.key(symbol, scripts[gv], target)
        return cache.built(key, path, write, load)

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        libraries = list(pool.map(compile_kernel, enumerate(order)))
    library = libraries[0]
    for other in libraries[1:]:
        library.import_module(other)
    return vm_build.VMExecutable(vm_build._ffi_api.VMLink(builder, target, library, external, params))

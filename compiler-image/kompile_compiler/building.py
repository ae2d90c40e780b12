"""A Relax module built for the CPU with its kernels compiled on every core the compile has.

`tvm.compile` hands all of a model's kernels to one `tvm.tirx.build`: one thread lowers them and
LLVM compiles them as one module. Tuned kernels are long once unrolled (SqueezeNet's two
F(4x4, 3x3) Winograd kernels take a second each to lower and compile), so a compile with
records spent most of its time there on one of its cores. Here the kernels are split into one
group a thread, by a rough cost (their printed size times their unrolling), each group built to
an LLVM module and its object file in its own thread (TVM releases the GIL in C++), and the VM
executable links them as `tvm.compile` would have. The VM pipeline itself is TVM's own, run
the way `relax.build` runs it, with that module's private helpers (`_vmcodegen`, `VMLink`):
TVM is pinned, and a change there fails every compile test.
"""

from __future__ import annotations

import heapq
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Every kernel TVM builds checks, at each call, the shape, dtype, strides and device of each of
# its arguments: in DenseNet-121's 190 kernels that was half of what LLVM compiled (20.8 s of
# lowering and code generation on one core, 11.4 s without). The VM calls the kernels only with
# tensors it allocated to the shapes Relax inferred, and checks the model's own inputs itself
# (`vm.builtin.check_tensor_info`, which this setting leaves in place), so the kernels' checks
# could only fail on a bug of TVM's; they are left out.
CONFIG = {"tirx.disable_assert": True}


def _cost(func) -> int:
    """A kernel's rough build cost: the size of its TIR, more where it asks to be unrolled."""
    text = func.script()
    return len(text) * (1 + text.count("T.unroll") + text.count("pragma_auto_unroll_max_step"))


def groups(costs: dict, count: int) -> list[list]:
    """The keys of `costs` in at most `count` groups of about equal total cost, the costliest placed first."""
    heap = [(0, i, []) for i in range(max(1, min(count, len(costs))))]
    for key in sorted(costs, key=lambda k: -costs[k]):
        load, i, group = heapq.heappop(heap)
        group.append(key)
        heapq.heappush(heap, (load + costs[key], i, group))
    return [group for _, _, group in sorted(heap, key=lambda item: item[1]) if group]


def build(mod, target, threads: int, objects: Path):
    """`mod` (Relax, its kernels scheduled) compiled to a Relax VM executable, as `tvm.compile`.
    The object files of all groups but the first are written to the folder `objects`, which
    must outlive the executable's `export_library`."""
    import tvm
    from tvm import relax
    from tvm.relax import vm_build

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
    costs = {gv: _cost(func) for gv, func in funcs.items()}
    # export_library writes the one LLVM module it is given itself, on one thread, with the
    # VM's own code and weights packed beside it: that module holds only the cheapest kernel,
    # and every group is compiled to its object file here, in parallel.
    cheapest = min(costs, key=costs.get)
    del costs[cheapest]
    parts = [{gv: funcs[gv] for gv in group} for group in [[cheapest], *groups(costs, threads)]]

    context = tvm.transform.PassContext.current()  # a thread's own is TVM's default: pass the caller's on

    def compile_part(index_part):
        index, part = index_part
        with context:
            library = tvm.tirx.build(tvm.IRModule(part, attrs=kernels.attrs), target=target)
        if index == 0:
            return library
        path = objects / f"kernels{index}.o"
        library.write_to_file(str(path))
        names = [str(f.attrs["global_symbol"]) for f in part.values() if "global_symbol" in f.attrs]
        return tvm.runtime.load_static_library(str(path), names)

    with ThreadPoolExecutor(max_workers=len(parts)) as pool:
        libraries = list(pool.map(compile_part, enumerate(parts)))
    library = libraries[0]
    for other in libraries[1:]:
        library.import_module(other)
    return vm_build.VMExecutable(vm_build._ffi_api.VMLink(builder, target, library, external, params))

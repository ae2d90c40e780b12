"""Compiled kernels kept in the shared tuning cache, so that a recompile links them instead of
compiling them again.

With tuning records, most of a compile is LLVM compiling the tuned kernels (vectorised and
unrolled, Winograd transforms): SqueezeNet's took 2.7 of 5.2 s in a fresh process, where the
untuned compile took 2.0 s in all. A kernel with the same TIR, scheduled the same way, built by
the same TVM and LLVM for the same target in the same pass context, is the same object file.
So every compile that has a shared cache stores each kernel's object there, keyed by all of
those (`key`), and a later compile that schedules a kernel the same way links the stored object:
the model compiled again with other options, or after its job was deleted, or another model
whose kernels came out the same.

The cache then holds machine code that goes into artifacts: whoever can write to it can change
what compiled models do, so it wants the write protection of the artifacts' own bucket. An
object is stored with its sha256 and checked when read; a damaged one is compiled again.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field

FORMAT = b"kompile.dev/kernel-object/v1\n"
FOLDER = "kernels"  # under the target's key in the cache, beside its record bundles


@dataclass
class KernelCache:
    """The objects under `<cache>/<target key>/kernels/`, with what this compile did with them."""

    records: object  # the `tuning.RecordCache` whose location (s3:// or a folder) holds them
    target_key: str
    reused: int = 0
    stored: int = 0
    problems: list[str] = field(default_factory=list)  # reads or writes that failed: the compile goes on
    # `building.build` calls get and put from several threads; `+=` on a count is no atomic step.
    _counting: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def _count(self, reused: int = 0, stored: int = 0) -> None:
        with self._counting:
            self.reused += reused
            self.stored += stored

    def get(self, key: str) -> bytes | None:
        from kompile.storage import StorageError

        try:
            data = self.records.read(self._path(key))
        except (StorageError, OSError) as err:
            self.problems.append(f"reading a compiled kernel: {err}")
            return None
        if data is None:
            return None
        digest, _, body = data.removeprefix(FORMAT).partition(b"\n")
        if not data.startswith(FORMAT) or hashlib.sha256(body).hexdigest().encode() != digest:
            self.problems.append(f"a damaged compiled kernel ({key[:12]}) was compiled again")
            return None
        self._count(reused=1)
        return body

    def put(self, key: str, body: bytes) -> None:
        from kompile.storage import StorageError

        data = FORMAT + hashlib.sha256(body).hexdigest().encode() + b"\n" + body
        try:
            self.records.write(self._path(key), data)
            self._count(stored=1)
        except (StorageError, OSError) as err:
            self.problems.append(f"storing a compiled kernel: {err}")

    def built(self, key: str, path, build, load):
        """`load(path)` of the file kept under `key`, written to `path`; where there is none, or
        it will not load, of the file `build(path)` writes there, which is then kept."""
        if (body := self.get(key)) is not None:
            path.write_bytes(body)
            try:
                return load(path)
            except Exception as err:  # noqa: BLE001 - the cache only saves time: build it anew
                self._count(reused=-1)  # `get` counted it
                self.problems.append(f"a cached {path.name} would not load ({str(err)[:200]}): built again")
        build(path)
        self.put(key, path.read_bytes())
        return load(path)

    def _path(self, key: str) -> str:
        return f"{self.target_key}/{FOLDER}/{key}.o"

    def wire(self) -> dict:
        return {"kernelsReused": self.reused, "kernelsStored": self.stored}


def key(name: str, script: str, target) -> str:
    """What makes a kernel's object file: its name (the object's symbol), its scheduled TIR, the
    target, the pass context it is built in, and the TVM and LLVM that build it, on this kind of
    machine (a target without a triple is built for the compiling machine's)."""
    import platform

    import tvm

    context = tvm.transform.PassContext.current()
    config = sorted((str(k), str(v)) for k, v in context.config.items())
    parts = [
        FORMAT.decode(),
        tvm.__version__,
        str(tvm.target.codegen.llvm_version_major()),
        str(target),
        platform.machine(),
        str(context.opt_level),
        repr(config),
        name,
        script,
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()

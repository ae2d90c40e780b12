"""Transcendental functions on CPU: GELU (exact and tanh), softmax and tanh compile to
polynomials that vectorise, not to calls of libm's scalar expf/erff/tanhf, and stay within
float32 rounding of torch."""

from __future__ import annotations

import pytest

from kompile.api import Framework
from kompile_compiler import packaging
from kompile_compiler.pipeline import compile_model
from kompile_compiler.targets import host_target
from tests.compiler.deps import need

torch = need("torch")

LIBM = (b"expf", b"erff", b"tanhf")


class Head(torch.nn.Module):
    """A transformer's feed-forward block and attention weights, in miniature."""

    def __init__(self, approximate: str):
        super().__init__()
        self.up = torch.nn.Linear(32, 64)
        self.down = torch.nn.Linear(64, 32)
        self.gelu = torch.nn.GELU(approximate=approximate)

    def forward(self, x):
        hidden = self.down(self.gelu(self.up(x)))
        return torch.softmax(hidden @ hidden.transpose(1, 2), dim=-1), torch.tanh(hidden)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_no_scalar_libm_calls_and_parity(approximate, tmp_path):
    torch.manual_seed(0)
    program = torch.export.export(Head(approximate).eval(), (torch.randn(1, 16, 32),))
    torch.export.save(program, str(tmp_path / "head.pt2"))
    _, manifest = compile_model(
        model_uri=str(tmp_path / "head.pt2"),
        framework=Framework.PYTORCH,
        data_input_config={"x": [1, 16, 32]},
        target=host_target(),
        workdir=tmp_path / "work",
        progress=lambda _: None,
    )
    library = (tmp_path / "work/artifact" / packaging.LIBRARY).read_bytes()
    # A dynamic import names its symbol, NUL-terminated, in the library's string table.
    assert [name for name in LIBM if b"\0" + name + b"\0" in library] == []
    assert manifest["parity"]["maxAbsError"] <= 1e-5

"""The custom ops' registrations (schema, fake, autograd) and torch.compile through them."""

import pytest
import torch

import snn5
from snn5.kernels import load_cpu_kernels, ops

pytestmark = pytest.mark.skipif(load_cpu_kernels() is None, reason="CPU kernels not built")


def _scalars(requires_grad):
    def s(v):
        return torch.tensor(v, requires_grad=requires_grad)
    return s


@pytest.mark.parametrize("requires_grad", [False, True])
def test_leaky_scan_opcheck(requires_grad):
    s = _scalars(requires_grad)
    x = (torch.randn(5, 7) * 2).requires_grad_(requires_grad)
    v0 = torch.rand(7).requires_grad_(requires_grad)
    beta = s(0.6)
    args = (x, v0, beta, s(0.4), s(1.0), s(2.0), False, 0, 0, False, True)
    torch.library.opcheck(ops.leaky_scan, args, test_utils=(
        "test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))


@pytest.mark.parametrize("requires_grad", [False, True])
def test_alif_scan_opcheck(requires_grad):
    s = _scalars(requires_grad)
    x = (torch.randn(5, 7) * 2).requires_grad_(requires_grad)
    args = (x, torch.rand(7).requires_grad_(requires_grad), torch.rand(7), s(1.0), s(2.0),
            0.6, 0.4, 0.9, 0.1, 1.8, 0, 0, False, True)
    torch.library.opcheck(ops.alif_scan, args, test_utils=(
        "test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))


def test_torch_compile_traces_through_the_ops():
    """One graph (fullgraph) through the neuron ops and the spike-fed EventLinear, which is
    nn.Linear under compile (its event path's choice depends on values)."""
    torch.manual_seed(0)
    net = snn5.Sequential(torch.nn.Linear(8, 16), snn5.LIF(2e-3, learn_v_th=True),
                          snn5.nn.EventLinear(16, 4), snn5.ALIF(5e-3))
    x = torch.randn(6, 3, 8)
    with torch.no_grad():
        infer = torch.compile(net, backend="aot_eager", fullgraph=True)(x)[0]
    assert torch.allclose(infer, net(x)[0].detach())
    eager_out, _ = net(x)
    eager_out.sum().backward()
    eager_grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    compiled = torch.compile(net, backend="aot_eager", fullgraph=True)
    out, _ = compiled(x)
    assert torch.allclose(out, eager_out)
    out.sum().backward()
    for p, g in zip(net.parameters(), eager_grads):
        assert torch.allclose(p.grad, g, atol=1e-6)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_torch_compile_inductor():
    net = snn5.Sequential(torch.nn.Linear(8, 16), snn5.LIF(2e-3))
    x = torch.randn(6, 3, 8)
    assert torch.equal(torch.compile(net)(x)[0], net(x)[0])

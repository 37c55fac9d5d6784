import pytest
import torch
from torch.profiler import profile

from vaekit.nets import ONEDNN_X86, Dense, mlp, set_onednn
from vaekit.train import train

from conftest import needs_compiler, small_config

needs_onednn = pytest.mark.skipif(not ONEDNN_X86, reason="oneDNN dense layers are for x86 CPUs")


@pytest.fixture
def onednn():
    """Leave the switch as a test found it."""
    previous = set_onednn(True)
    yield set_onednn
    set_onednn(previous)


def grads(net, x):
    """Output and the gradients of a scalar of it w.r.t. the input and every parameter."""
    x = x.clone().requires_grad_()
    y = net(x)
    (y.square().sum() + y.sum()).backward()
    out = [y.detach(), x.grad] + [p.grad.clone() for p in net.parameters()]
    net.zero_grad(set_to_none=True)
    return out


def products(fn) -> set[str]:
    """Names of the matrix-product ops `fn` runs."""
    with profile() as prof:
        fn()
    return {e.key for e in prof.key_averages()} & {"aten::addmm", "aten::mm", "mkldnn::_linear_pointwise"}


@needs_onednn
def test_onednn_dense_matches_addmm_in_value_and_gradient(onednn):
    torch.manual_seed(0)
    net, x = mlp([784, 400, 20, 784], "relu"), torch.rand(128, 784)
    fast = grads(net, x)
    onednn(False)
    slow = grads(net, x)
    for a, b in zip(fast, slow):
        assert a.shape == b.shape and a.dtype == b.dtype == torch.float32
        assert (a - b).abs().max() <= 1e-5 * b.abs().max()


@needs_onednn
def test_an_empty_batch_goes_through(onednn):
    layer = Dense(5, 3)
    x = torch.randn(0, 5, requires_grad=True)
    y = layer(x)
    y.sum().backward()
    assert y.shape == (0, 3) and layer.weight.grad.abs().sum() == 0


@needs_onednn
def test_the_switch_and_autocast_choose_the_product(onednn):
    layer, x = Dense(64, 32), torch.randn(8, 64)
    assert products(lambda: layer(x)) == {"mkldnn::_linear_pointwise"}
    with torch.autocast("cpu", torch.bfloat16):  # bf16 products are autocast's, not fp32 oneDNN's
        assert layer(x).dtype == torch.bfloat16
    onednn(False)
    assert products(lambda: layer(x)) == {"aten::addmm"}


@needs_onednn
def test_training_config_turns_it_off(tmp_path, digits, onednn):
    layer, x = Dense(64, 32), torch.randn(8, 64)
    train(small_config(epochs=1, onednn=False), tmp_path / "run", data=digits, progress=False)
    assert products(lambda: layer(x)) == {"aten::addmm"}


@needs_onednn
@needs_compiler
def test_compiled_onednn_dense_matches_eager(onednn):
    torch.manual_seed(0)
    net, x = mlp([64, 32, 8], "relu"), torch.randn(16, 64)
    eager = grads(net, x)
    torch._dynamo.reset()
    compiled = grads(torch.compile(net), x)
    for a, b in zip(compiled, eager):
        assert (a - b).abs().max() <= 1e-5 * b.abs().max()

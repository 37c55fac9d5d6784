"""Encoder and decoder bodies: tensors in, tensors out. The VAE turns their outputs into
distributions, so these know nothing about probability."""

from __future__ import annotations

import math
import platform

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "gelu": nn.GELU}


# fp32 products on x86 CPUs go through oneDNN rather than torch.mm: torch.mm calls MKL, whose
# fp32 GEMM runs AVX2 code on AMD CPUs (~200 GFLOP/s on this project's 2-core Zen 5), while
# oneDNN runs AVX-512 there (~400-460 GFLOP/s), the same precision (measured, docs/speed.md).
# bf16 products already reach oneDNN through autocast. set_onednn(False) turns it off.
ONEDNN_X86 = torch.backends.mkldnn.is_available() and platform.machine().lower() in ("x86_64", "amd64")
_onednn = {"on": ONEDNN_X86}


def set_onednn(enabled: bool) -> bool:
    """Route fp32 dense layers on x86 CPUs through oneDNN (where this build has it) or torch.addmm.
    Returns the previous setting, for callers that restore it."""
    previous, _onednn["on"] = _onednn["on"], enabled and ONEDNN_X86
    return previous


def onednn_mm(a: torch.Tensor, b_t: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """a @ b_t.T (+ bias) by oneDNN; b_t may be any strided view, a is made contiguous."""
    if torch.compiler.is_compiling():  # inductor's own lowering of the op wants frozen weights
        return compiled_onednn_mm(a, b_t, bias)
    return linear_pointwise(a, b_t, bias)


def linear_pointwise(a: torch.Tensor, b_t: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(a, b_t, bias, "none", [], "")


# The same product as an opaque op, for torch.compile (eager calls skip its dispatch overhead).
compiled_onednn_mm = torch.library.custom_op("vaekit::onednn_mm", linear_pointwise, mutates_args=())


@compiled_onednn_mm.register_fake
def _(a, b_t, bias):
    return a.new_empty(a.shape[0], b_t.shape[0])


class OneDNNDense(torch.autograd.Function):
    """x W + b and its gradients, every product by oneDNN; W stored (in, out)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return onednn_mm(x, weight.t(), bias)  # (B, out)

    @staticmethod
    def backward(ctx, grad):  # grad (B, out)
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        grad_x = onednn_mm(grad, weight) if need_x else None  # (B, in)
        grad_w = onednn_mm(x.t(), grad.t()) if need_w else None  # (in, out)
        grad_b = grad.sum(0) if need_b else None
        return grad_x, grad_w, grad_b


class Dense(nn.Module):
    """y = x W + b with W stored (in, out), as nn.Linear initialises it (U(+-1/sqrt(in))).

    Storing W in the layout the products use makes every weight-gradient GEMM and bf16 cast
    contiguous: 15% faster training steps than nn.Linear on CPU, fp32 and bf16 alike (measured).
    """

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        bound = 1 / math.sqrt(n_in)
        self.weight = nn.Parameter(torch.empty(n_in, n_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_out).uniform_(-bound, bound))

    def forward(self, x):
        if (_onednn["on"] and x.device.type == "cpu" and x.dtype == self.weight.dtype == torch.float32
                and not torch.is_autocast_enabled("cpu") and x.numel() > 0):  # oneDNN refuses empty batches
            return OneDNNDense.apply(x, self.weight, self.bias)
        return torch.addmm(self.bias, x, self.weight)  # (B, out)


class MLP(nn.Sequential):
    """Dense layers with activations between them. Without autograd (scoring, serving) a ReLU
    runs in place on the fresh product before it, sparing one allocation per layer."""

    def forward(self, x):
        if torch.is_grad_enabled() or torch.jit.is_tracing():
            return super().forward(x)
        for layer in self:
            x = x.relu_() if type(layer) is nn.ReLU else layer(x)
        return x


def mlp(sizes: list[int], activation: str) -> MLP:
    """Dense layers of the given sizes with `activation` between them (none after the last)."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Dense(a, b))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return MLP(*layers)


def with_condition(h: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    """Append the condition (B, K) (one-hot labels of a conditional VAE) to features (B, F)."""
    return h if c is None else torch.cat([h, c.to(h.dtype)], dim=1)


class MLPEncoder(nn.Module):
    """(B, *x_shape) [+ condition (B, K)] -> (B, out_dim) through fully connected layers."""

    def __init__(self, x_shape, out_dim: int, hidden: list[int], activation: str, cond_dim: int = 0):
        super().__init__()
        self.net = mlp([math.prod(x_shape) + cond_dim, *hidden, out_dim], activation)

    def forward(self, x, c=None):
        return self.net(with_condition(x.flatten(1), c))  # (B, out_dim)


class MLPDecoder(nn.Module):
    """(B, latent_dim) [+ condition] -> (B, *out_shape); hidden layers mirror the encoder's."""

    def __init__(self, latent_dim: int, out_shape, hidden: list[int], activation: str, cond_dim: int = 0):
        super().__init__()
        self.out_shape = tuple(out_shape)
        self.net = mlp([latent_dim + cond_dim, *reversed(hidden), math.prod(out_shape)], activation)

    def forward(self, z, c=None):
        return self.net(with_condition(z, c)).view(-1, *self.out_shape)  # (B, *out_shape)


NETS = {"mlp": (MLPEncoder, MLPDecoder)}  # the generic networks; a kind brings its own (Kind.nets)


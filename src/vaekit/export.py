"""`vaekit export RUN --format onnx --out DIR`: the encoder and decoder as ONNX models, checked
against PyTorch with onnxruntime on the run's test inputs, and model.json saying what goes in and
comes out of each and how the kind turns its data into those tensors and back.

The encoder gives q(z|x)'s mean and log-variance; the decoder gives the likelihood's parameters
(logits, means and log-scales: model.json says which). A kind builds its graphs (Kind.onnx_graphs):
the generic ones below serve the dense kinds; an item-set encoder exports its dense product, a
sequence run its encoder GRU and its teacher-forced decoder GRU.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import files
from .errors import VaekitError
from .nets import set_onednn

OPSET = 17
TOLERANCE = 1e-4  # |onnxruntime - torch| <= TOLERANCE * (1 + |torch|), element by element


@dataclass
class Graph:
    """One ONNX model to write: `module(*inputs)` traced, with names and batch axes."""

    name: str
    module: nn.Module
    inputs: tuple
    input_names: list[str]
    output_names: list[str]
    dynamic: dict = field(default_factory=dict)  # {tensor name: {axis: name}}
    about: str = ""


class Encoder(nn.Module):
    """x (B, *x_shape) [, condition (B, K) one-hot] -> (mu, logvar), each (B, D)."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, x, c=None):
        mu, logvar = self.vae.encoder(x, c).float().chunk(2, dim=-1)
        return mu, logvar


class Decoder(nn.Module):
    """z (B, D) [, condition (B, K) one-hot] -> the likelihood's parameters."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, z, c=None):
        return self.vae.decoder(z, c).float()


def condition_of(vae, y: torch.Tensor | None, n: int) -> tuple:
    """The one-hot condition input of a conditional run (empty otherwise)."""
    if not vae.conditional:
        return ()
    y = torch.zeros(n, dtype=torch.long) if y is None else y[:n]
    return (torch.nn.functional.one_hot(y.long(), vae.cfg.num_classes).float(),)


def dense_graphs(run, x: torch.Tensor, y: torch.Tensor | None) -> list[Graph]:
    """The encoder and decoder of a kind whose examples are fixed-shape tensors."""
    vae = run.vae
    x, y = x[:256], None if y is None else y[:256]
    c = condition_of(vae, y, len(x))
    names = ["condition"] if c else []
    batch = {"x": {0: "batch"}, "z": {0: "batch"}, "mu": {0: "batch"}, "logvar": {0: "batch"},
             "params": {0: "batch"}, "condition": {0: "batch"}}
    z = vae.encode(x, vae.labels_for(y)).mean.detach()
    return [Graph("encoder", Encoder(vae), (x, *c), ["x", *names], ["mu", "logvar"], batch,
                  "q(z|x) = N(mu, exp(logvar)) of inputs prepared as model.json's preprocessing says"),
            Graph("decoder", Decoder(vae), (z, *c), ["z", *names], ["params"], batch,
                  f"the parameters of p(x|z), likelihood {run.cfg.model.likelihood!r} (model.json's likelihood)")]


def export(run, out: str | Path, data_dir: str | None = None) -> list[Path]:
    """Write OUT/encoder.onnx, OUT/decoder.onnx (or the kind's graphs) and OUT/model.json for an
    open run (checkpoint.open_run)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise VaekitError("export needs onnx and onnxruntime: pip install 'vaekit[serve]'") from None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        x, y = run.inputs(None, data_dir)
    except VaekitError as e:
        raise VaekitError(f"export checks the models on the run's test inputs, which cannot be read ({e}); "
                          "give --data-dir") from None
    vae = run.vae.eval()
    written, described = [], []
    previous = set_onednn(False)  # plain products: oneDNN's private op has no ONNX form
    try:
        with torch.no_grad():
            graphs = run.kind.onnx_graphs(run, x, y)
            for g in graphs:
                g.module.eval()  # a wrapper starts in training mode: its dropout would run
                data = to_onnx(g)
                diff = check(ort, data, g)
                path = out / f"{g.name}.onnx"
                files.atomic_write(path, data)
                written.append(path)
                described.append({"file": path.name, "about": g.about,
                                  "inputs": [tensor_spec(n, t, g.dynamic) for n, t in zip(g.input_names, g.inputs)],
                                  "outputs": g.output_names, "max_abs_diff_vs_torch": diff,
                                  "checked_examples": int(len(g.inputs[0]))})
    finally:
        set_onednn(previous)
    model = {"format": "onnx", "opset": OPSET, "kind": run.kind.name, "latent_dim": vae.latent_dim,
             "likelihood": run.cfg.model.likelihood, "conditional": bool(vae.conditional),
             "num_classes": vae.cfg.num_classes if vae.conditional else 0, "graphs": described,
             "preprocessing": run.kind.export_notes(run)}
    path = out / "model.json"
    files.atomic_write(path, (json.dumps(model, indent=1) + "\n").encode())
    return written + [path]


def to_onnx(g: Graph) -> bytes:
    buf = io.BytesIO()
    names = set(g.input_names) | set(g.output_names)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notes
            torch.onnx.export(g.module, g.inputs, buf, dynamo=False, opset_version=OPSET, input_names=g.input_names,
                              output_names=g.output_names,
                              dynamic_axes={k: v for k, v in g.dynamic.items() if k in names})
    except Exception as e:  # noqa: BLE001 - said in one line: which graph, and why
        raise VaekitError(f"the {g.name} cannot be exported to ONNX: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    return buf.getvalue()


def check(ort, data: bytes, g: Graph) -> float:
    """onnxruntime's outputs against torch's on the graph's inputs; refused past the tolerance."""
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(None, {n: t.numpy() for n, t in zip(g.input_names, g.inputs)})
    want = g.module(*g.inputs)
    want = want if isinstance(want, tuple) else (want,)
    worst = 0.0
    for name, a, b in zip(g.output_names, got, want):
        b = b.numpy()
        if a.shape != b.shape:
            raise VaekitError(f"the exported {g.name}'s {name} has shape {a.shape}, torch's {b.shape}")
        excess = np.abs(a - b) - TOLERANCE * (1 + np.abs(b))
        if (excess > 0).any():
            raise VaekitError(f"the exported {g.name}'s {name} differs from torch's by {np.abs(a - b).max():.3g}")
        worst = max(worst, float(np.abs(a - b).max()) if a.size else 0.0)
    return worst


def tensor_spec(name: str, t: torch.Tensor, dynamic: dict) -> dict:
    shape = [dynamic.get(name, {}).get(i, n) for i, n in enumerate(t.shape)]
    return {"name": name, "shape": shape, "dtype": str(t.dtype).removeprefix("torch.")}

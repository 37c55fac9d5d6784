"""The table VAE's networks and its likelihood: a product over columns of a categorical over each
column's tokens and, for a numeric column's continuous cells, a Gaussian over the cell's normal
score (columns.py), with mean and log-scale predicted per row (Xu et al., 2019, TVAE, sec. 4.3
use one per column; a per-row scale fits heteroscedastic columns better).

log p(x|z) = sum_c [ log Cat(t_c | z) + [t_c = continuous] log N(v_c | mu_c(z), sigma_c(z)^2) ]

Unseen tokens (-1: a category or a missing cell the training rows never had) score the floor
log 1/(n + 1) of a value not seen in n rows, and contribute no gradient.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution

from ...nets import mlp, with_condition
from .columns import cont_token, has_value, num_tokens

MIN_LOG_SCALE = -5.0  # a Gaussian no narrower than e^-5 of a standard normal score
PADDED_TOKENS = 256


class Layout:
    """Where each column sits in the fields (input) and in the decoder's output (parameters)."""

    def __init__(self, schema: dict):
        self.names = [c["name"] for c in schema["columns"]]
        self.tokens, self.cont, self.token_field, self.value_field = [], [], [], []
        self.logits, self.gauss = [], []  # parameter slices: logits (start, end), Gaussian (mu, log scale) start
        field = param = 0
        for col in schema["columns"]:
            k = num_tokens(col)
            self.tokens.append(k)
            self.cont.append(cont_token(col))
            self.token_field.append(field)
            self.value_field.append(field + 1 if has_value(col) else -1)
            self.logits.append((param, param + k))
            param += k
            self.gauss.append(param if has_value(col) else -1)
            param += 2 if has_value(col) else 0
            field += 1 + has_value(col)
        self.num_fields, self.num_params = field, param
        self.onehot_offsets = torch.tensor([0] + self.tokens[:-1]).cumsum(0)  # (C,)
        self.num_onehot = sum(self.tokens)
        self.value_fields = [f for f in self.value_field if f >= 0]
        self.floor = -math.log(schema.get("num_rows", 1) + 1)  # log-probability of an unseen token
        # Columns of at most PADDED_TOKENS tokens share one padded (C, K) gather and softmax; the
        # rare wider ones (thousands of categories) get their own.
        self.narrow = [c for c, k in enumerate(self.tokens) if k <= PADDED_TOKENS]
        self.wide = [c for c, k in enumerate(self.tokens) if k > PADDED_TOKENS]
        width = max([self.tokens[c] for c in self.narrow], default=1)
        pad = torch.full((len(self.narrow), width), param, dtype=torch.long)  # index P: the -inf pad
        for i, c in enumerate(self.narrow):
            pad[i, : self.tokens[c]] = torch.arange(*self.logits[c])
        self.pad_index = pad.flatten()
        self.pad_shape = (len(self.narrow), width)
        self.value_cols = [c for c in range(len(self.tokens)) if self.value_field[c] >= 0]
        self.mean_index = torch.tensor([self.gauss[c] for c in self.value_cols], dtype=torch.long)
        self.cont_tokens = torch.tensor([self.cont[c] for c in self.value_cols], dtype=torch.long)


class TableEncoder(nn.Module):
    """Fields (B, F) -> one-hot tokens and normal scores -> MLP -> (B, out_dim)."""

    def __init__(self, layout: Layout, out_dim: int, hidden: list[int], activation: str, cond_dim: int = 0):
        super().__init__()
        self.layout = layout
        self.register_buffer("token_fields", torch.tensor(layout.token_field), persistent=False)
        self.register_buffer("value_fields", torch.tensor(layout.value_fields, dtype=torch.long), persistent=False)
        self.register_buffer("offsets", layout.onehot_offsets, persistent=False)
        self.net = mlp([layout.num_onehot + len(layout.value_fields) + cond_dim, *hidden, out_dim], activation)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.index_select(1, self.token_fields).long()  # (B, C)
        # An unseen token (-1) sets the spare last slot, which is dropped.
        slots = torch.where(tokens >= 0, tokens + self.offsets, self.layout.num_onehot)
        onehot = x.new_zeros(len(x), self.layout.num_onehot + 1).scatter_(1, slots, 1.0)
        return torch.cat([onehot[:, :-1], x.index_select(1, self.value_fields)], dim=1)  # (B, K + V)

    def forward(self, x, c=None):
        return self.net(with_condition(self.features(x), c))


class TableDecoder(nn.Module):
    """(B, latent_dim) -> MLP -> (B, P) likelihood parameters."""

    def __init__(self, layout: Layout, latent_dim: int, hidden: list[int], activation: str, cond_dim: int = 0):
        super().__init__()
        self.net = mlp([latent_dim + cond_dim, *reversed(hidden), layout.num_params], activation)

    def forward(self, z, c=None):
        return self.net(with_condition(z, c))


class TableLikelihood(nn.Module):
    needs_unit_range = False
    num_params = 1

    def __init__(self, layout: Layout):
        super().__init__()
        self.layout = layout

    def forward(self, out):  # out: (..., P)
        return Columns(out, self.layout)


class Columns(Distribution):
    """p(x|z) over a table row's fields, batch shape out.shape[:-1], event shape (F,)."""

    arg_constraints = {}

    def __init__(self, params: torch.Tensor, layout: Layout, temperature: float = 1.0):
        self.params, self.layout, self.temperature = params, layout, temperature
        super().__init__(batch_shape=params.shape[:-1], event_shape=torch.Size([layout.num_fields]),
                         validate_args=False)

    def logits(self, c: int) -> torch.Tensor:
        start, end = self.layout.logits[c]
        return self.params[..., start:end]

    def padded_logits(self) -> torch.Tensor:
        """The narrow columns' logits side by side, padded with -inf: (..., C_narrow, K)."""
        lay = self.layout
        pad = self.params.new_full((*self.params.shape[:-1], 1), -math.inf)
        flat = torch.cat([self.params, pad], dim=-1).index_select(-1, lay.pad_index.to(self.params.device))
        return flat.view(*self.params.shape[:-1], *lay.pad_shape)

    def gaussians(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Means and log-scales of the value columns: (..., V) each."""
        index = self.layout.mean_index.to(self.params.device)
        return self.params.index_select(-1, index), self.params.index_select(-1, index + 1).clamp(min=MIN_LOG_SCALE)

    def column_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x_c|z) of each column: (..., C), x of shape (..., F) broadcasting with the batch."""
        lay = self.layout
        dev = self.params.device
        batch = self.params.shape[:-1]
        tokens = x[..., lay.token_field].long().expand(*batch, len(lay.tokens))  # (..., C)
        parts = torch.empty(*batch, len(lay.tokens), device=dev, dtype=self.params.dtype)
        if lay.narrow:
            narrow = torch.tensor(lay.narrow, device=dev)
            t = tokens.index_select(-1, narrow)
            logp = F.log_softmax(self.padded_logits(), dim=-1)  # (..., C_narrow, K)
            parts[..., lay.narrow] = logp.gather(-1, t.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        for c in lay.wide:
            logp = F.log_softmax(self.logits(c), dim=-1)
            parts[..., c] = logp.gather(-1, tokens[..., c : c + 1].clamp(min=0)).squeeze(-1)
        lp = torch.where(tokens >= 0, parts, lay.floor)
        if lay.value_cols:
            cols = torch.tensor(lay.value_cols, device=dev)
            mean, log_scale = self.gaussians()
            v = x[..., lay.value_fields]
            gauss = -0.5 * ((v - mean) * torch.exp(-log_scale)) ** 2 - log_scale - 0.5 * math.log(2 * math.pi)
            cont = tokens.index_select(-1, cols) == lay.cont_tokens.to(dev)
            lp = lp.index_add(-1, cols, torch.where(cont, gauss, 0.0))
        return lp

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.column_log_prob(x).sum(-1)

    @property
    def mean(self) -> torch.Tensor:
        """The most likely fields: each column's likeliest token, the Gaussians' means."""
        return self.fields(lambda logits: logits, lambda mean, log_scale: mean)

    def sample(self, sample_shape=torch.Size(), generator: torch.Generator | None = None) -> torch.Tensor:
        """Fields drawn from p(x|z): tokens by the Gumbel-max trick, values from the Gaussians;
        `temperature` scales the logits' and the Gaussians' spread."""
        t = self.temperature

        def gumbel(logits):
            u = torch.rand(logits.shape, generator=generator, device=logits.device).clamp_(1e-12, 1 - 1e-7)
            return logits / max(t, 1e-6) - torch.log(-torch.log(u))

        def value(mean, log_scale):
            eps = torch.randn(mean.shape, generator=generator, device=mean.device)
            return mean + t * log_scale.exp() * eps

        with torch.no_grad():
            return self.fields(gumbel, value)

    def fields(self, score, pick_value) -> torch.Tensor:
        """Fields with each token the argmax of score(logits), each value pick_value(mean, log scale)."""
        lay = self.layout
        out = self.params.new_zeros(*self.params.shape[:-1], lay.num_fields)
        if lay.narrow:
            out[..., [lay.token_field[c] for c in lay.narrow]] = score(self.padded_logits()).argmax(-1).to(out.dtype)
        for c in lay.wide:
            out[..., lay.token_field[c]] = score(self.logits(c)).argmax(-1).to(out.dtype)
        if lay.value_cols:
            out[..., lay.value_fields] = pick_value(*self.gaussians())
        return out

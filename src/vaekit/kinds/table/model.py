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
BUCKETS = (4, 16, 64, 256)  # columns with up to this many tokens share one padded softmax
PAD = -1e30  # added to padding logits: softmax gives them exactly 0, and no inf enters a gradient


class Layout:
    """Where each column sits in the fields (input) and in the decoder's output (parameters).

    The decoder emits each group of columns' logits as one padded (n, width) block (groups by
    token count, see buckets), then a mean and a log-scale per value column; padding slots get
    PAD added, so a group's logits are a view of the output, with no gather in the step."""

    def __init__(self, schema: dict):
        self.names = [c["name"] for c in schema["columns"]]
        self.tokens = [num_tokens(c) for c in schema["columns"]]
        self.cont = [cont_token(c) for c in schema["columns"]]
        self.token_field, self.value_field = [], []
        field = 0
        for col in schema["columns"]:
            self.token_field.append(field)
            self.value_field.append(field + 1 if has_value(col) else -1)
            field += 1 + has_value(col)
        self.num_fields = field
        self.groups, param = [], 0
        mask = []
        for cols in buckets(self.tokens):
            group = Group(cols, [self.tokens[c] for c in cols], param)
            self.groups.append(group)
            mask.append(group.mask)
            param += group.size
        self.value_cols = [c for c in range(len(self.tokens)) if self.value_field[c] >= 0]
        self.value_fields = [self.value_field[c] for c in self.value_cols]
        self.gauss_start = param  # means, then log-scales, of the value columns
        self.num_params = param + 2 * len(self.value_cols)
        self.pad_mask = torch.cat(mask + [torch.zeros(2 * len(self.value_cols))])  # (P,): 0 or PAD
        self.cont_tokens = torch.tensor([self.cont[c] for c in self.value_cols], dtype=torch.long)
        # Index tensors made once (a score's pass uses each; lists index slower)
        self.token_index = torch.tensor(self.token_field)
        self.value_index = torch.tensor(self.value_cols, dtype=torch.long)
        self.value_field_index = torch.tensor(self.value_fields, dtype=torch.long)
        self.group_order = torch.argsort(torch.cat([g.cols for g in self.groups]))  # groups' columns -> columns
        self.onehot_offsets = torch.tensor([0] + self.tokens[:-1]).cumsum(0)  # (C,)
        self.num_onehot = sum(self.tokens)
        self.floor = -math.log(schema.get("num_rows", 1) + 1)  # log-probability of an unseen token


def buckets(tokens: list[int]) -> list[list[int]]:
    """Columns grouped by token count (up to 4, 16, 64, 256; wider ones alone), so that one padded
    softmax serves many columns without padding a binary column to a 40-category one."""
    groups, lower = [], 0
    for upper in BUCKETS:
        cols = [c for c, k in enumerate(tokens) if lower < k <= upper]
        if cols:
            groups.append(cols)
        lower = upper
    return groups + [[c] for c, k in enumerate(tokens) if k > BUCKETS[-1]]


class Group:
    """Columns whose logits sit side by side in the decoder's output as an (n, width) block
    starting at `start`; slots past a column's token count are padding."""

    def __init__(self, cols: list[int], tokens: list[int], start: int):
        self.cols = torch.tensor(cols)
        self.n, self.width, self.start = len(cols), max(tokens), start
        self.size = self.n * self.width
        mask = torch.zeros(self.n, self.width)
        for i, k in enumerate(tokens):
            mask[i, k:] = PAD
        self.mask = mask.flatten()


class TableEncoder(nn.Module):
    """Fields (B, F) -> one-hot tokens and normal scores -> MLP -> (B, out_dim)."""

    def __init__(self, layout: Layout, out_dim: int, hidden: list[int], activation: str, cond_dim: int = 0):
        super().__init__()
        self.layout = layout
        self.register_buffer("token_fields", layout.token_index, persistent=False)
        self.register_buffer("value_fields", layout.value_field_index, persistent=False)
        self.register_buffer("offsets", layout.onehot_offsets, persistent=False)
        self.net = mlp([layout.num_onehot + len(layout.value_fields) + cond_dim, *hidden, out_dim], activation)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.index_select(1, self.token_fields).long()  # (B, C)
        # An unseen token (-1) sets the spare last slot, which is dropped.
        slots = torch.where(tokens >= 0, tokens + self.offsets, self.layout.num_onehot)
        onehot = x.new_zeros(len(x), self.layout.num_onehot + 1).scatter_(1, slots, 1.0)
        return torch.cat([onehot[:, :-1], x.index_select(1, self.value_fields)], dim=1)  # (B, K + V)

    def forward(self, x, c=None):
        if torch.is_grad_enabled() or torch.jit.is_tracing() or x.dtype != self.net[0].weight.dtype:
            return self.net(with_condition(self.features(x), c))
        return self.net[1:](self.first_layer(x, c))

    def first_layer(self, x, c=None):
        """The first product without the one-hot matrix (inference): each column's token picks
        its row of the weight, C rows summed instead of a product over K mostly-zero features."""
        first, k = self.net[0], self.layout.num_onehot
        tokens = x.index_select(1, self.token_fields).long()
        slots = torch.where(tokens >= 0, tokens + self.offsets, k)  # k: unseen, a row of zeros
        rows = torch.cat([first.weight[:k], first.weight.new_zeros(1, first.weight.shape[1])])
        picked = F.embedding_bag(slots, rows, mode="sum")  # (4x faster than with padding_idx)
        rest = with_condition(x.index_select(1, self.value_fields), c)
        return torch.addmm(picked.add_(first.bias), rest, first.weight[k:])


class TableDecoder(nn.Module):
    """(B, latent_dim) -> MLP -> (B, P) likelihood parameters.

    Padding logits come out at PAD through their bias: their softmax weight is exactly 0, so they
    never receive a gradient and Adam never moves them (no masking pass in the step)."""

    def __init__(self, layout: Layout, latent_dim: int, hidden: list[int], activation: str, cond_dim: int = 0):
        super().__init__()
        self.net = mlp([latent_dim + cond_dim, *reversed(hidden), layout.num_params], activation)
        with torch.no_grad():
            self.net[-1].bias.add_(layout.pad_mask)

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

    def group_logits(self, group: Group) -> torch.Tensor:
        """A group's logits: (..., n, width), padding slots at PAD."""
        block = self.params[..., group.start : group.start + group.size]
        return block.unflatten(-1, (group.n, group.width))

    def gaussians(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Means and log-scales of the value columns: (..., V) each."""
        start, v = self.layout.gauss_start, len(self.layout.value_cols)
        return self.params[..., start : start + v], self.params[..., start + v : start + 2 * v].clamp(min=MIN_LOG_SCALE)

    def column_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x_c|z) of each column: (..., C), x of shape (..., F) broadcasting with the batch."""
        lay, dev = self.layout, self.params.device
        batch = self.params.shape[:-1]
        tokens = x.index_select(-1, lay.token_index.to(dev)).long().expand(*batch, len(lay.tokens))  # (..., C)
        picked = []  # each group's columns' log-probabilities, groups side by side
        for group in lay.groups:
            t = tokens.index_select(-1, group.cols.to(dev)).clamp(min=0).unsqueeze(-1)
            picked.append(F.log_softmax(self.group_logits(group), dim=-1).gather(-1, t).squeeze(-1))
        lp = torch.cat(picked, -1).index_select(-1, lay.group_order.to(dev))  # back in column order
        lp = torch.where(tokens >= 0, lp, lay.floor)
        if lay.value_cols:
            cols = lay.value_index.to(dev)
            mean, log_scale = self.gaussians()
            v = x.index_select(-1, lay.value_field_index.to(dev))
            gauss = -0.5 * ((v - mean) * torch.exp(-log_scale)) ** 2 - log_scale - 0.5 * math.log(2 * math.pi)
            cont = tokens.index_select(-1, cols) == lay.cont_tokens.to(dev)
            lp = lp.index_add(-1, cols, torch.where(cont, gauss, 0.0))
        return lp

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.column_log_prob(x).sum(-1)

    @property
    def mean(self) -> torch.Tensor:
        """The most likely fields: each column's likeliest token, the Gaussians' means."""
        return self.fields(lambda logits: logits.argmax(-1), lambda mean, log_scale: mean)

    def sample(self, sample_shape=torch.Size(), generator: torch.Generator | None = None) -> torch.Tensor:
        """Fields drawn from p(x|z): tokens by inverting each column's CDF at one uniform draw,
        values from the Gaussians; `temperature` scales the logits' and the Gaussians' spread."""
        t = max(self.temperature, 1e-6)

        def token(logits):  # (..., n, width) -> (..., n)
            cdf = torch.softmax(logits / t, dim=-1).cumsum_(-1)
            u = torch.rand((*cdf.shape[:-1], 1), generator=generator, device=cdf.device)
            return torch.searchsorted(cdf, u * cdf[..., -1:]).squeeze(-1)  # padding's cdf never rises

        def value(mean, log_scale):
            eps = torch.randn(mean.shape, generator=generator, device=mean.device)
            return mean + t * log_scale.exp() * eps

        with torch.no_grad():
            return self.fields(token, value)

    def fields(self, pick_token, pick_value) -> torch.Tensor:
        """Fields with each column's token pick_token(its group's padded logits), each value
        pick_value(mean, log scale)."""
        lay = self.layout
        out = self.params.new_zeros(*self.params.shape[:-1], lay.num_fields)
        for group in lay.groups:
            fields = [lay.token_field[c] for c in group.cols.tolist()]
            out[..., fields] = pick_token(self.group_logits(group)).to(out.dtype)
        if lay.value_cols:
            out[..., lay.value_fields] = pick_value(*self.gaussians())
        return out

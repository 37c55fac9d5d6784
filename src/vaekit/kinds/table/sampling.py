"""Drawing synthetic rows: z from the prior (or, given conditions on columns, from the prior
reweighted by them), the target from its training frequencies for a model conditioned on it,
then every column from p(x_c | z, y)."""

from __future__ import annotations

import sys

import pandas as pd
import torch

from ...errors import VaekitError
from ...metrics import autocast
from ...speed import resolve_precision
from . import columns as cols
from .model import Layout

SAMPLE_CHUNK = 65_536  # rows decoded at a time: memory stays flat in the sample size


def parse_conditions(items: list[str]) -> dict[str, str]:
    conditions = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise VaekitError(f"--condition {item!r}: expected COL=VALUE")
        conditions[name.strip()] = value.strip()
    return conditions


def condition_fields(schema: dict, conditions: dict[str, str]) -> dict[int, tuple[int, float]]:
    """{column index: (token, normal score)} for each condition, checked against the schema."""
    out = {}
    names = [c["name"] for c in schema["columns"]]
    for name, value in conditions.items():
        if name not in names:
            raise VaekitError(f"--condition {name}={value}: no column {name!r} in this run "
                              f"(it has {', '.join(names[:8])}{', ...' if len(names) > 8 else ''})")
        c = names.index(name)
        col = schema["columns"][c]
        series = pd.Series([value], dtype=object)
        missing = cols.missing_mask(series)
        if col["type"] == "numeric":
            try:
                token, z = cols.encode_numeric(series, missing, col, "--condition")
            except VaekitError:
                raise VaekitError(f"--condition {name}={value}: column {name!r} is numeric, {value!r} is not a number") from None
            token, z = int(token[0]), float(z[0])
        else:
            token = cols.missing_token(col) if missing[0] else (
                col["categories"].index(value) if value in col["categories"] else -1)
            z = 0.0
        if token < 0:
            shown = ", ".join(col.get("categories", [])[:8])
            raise VaekitError(f"--condition {name}={value}: column {name!r} never holds {value!r} in the training "
                              f"rows" + (f" (its values include {shown})" if shown else ""))
        out[c] = (token, z)
    return out


def target_index(schema: dict) -> int | None:
    """The index of the target column when it is categorical (the model is conditioned on it)."""
    for c, col in enumerate(schema["columns"]):
        if col["name"] == schema.get("target") and col["type"] != "numeric":
            return c
    return None


@torch.no_grad()
def draw_latents(vae, schema: dict, fixed: dict[int, tuple[int, float]], num: int, temperature: float,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """z, and the target token y of a conditioned model, for `num` rows that satisfy `fixed`.

    Without conditions: z ~ p(z), y from the target's training frequencies. A condition on the
    target fixes y. Conditions on other columns are met by sampling-importance-resampling: draws
    (z, y) weighted by p(x_c = v | z, y), resampled; the columns being independent given (z, y),
    decoding them gives the other columns' conditional distribution given the conditions."""
    c_target = target_index(schema) if vae.conditional else None
    others = {c: v for c, v in fixed.items() if c != c_target}

    def propose(m):
        z = vae.prior.sample(m, 1.0 if others else temperature, generator, vae.encode)
        if c_target is None:
            return z, None
        if c_target in fixed:
            return z, torch.full((m,), fixed[c_target][0])
        counts = torch.tensor(schema["columns"][c_target]["counts"], dtype=torch.float)
        return z, torch.multinomial(counts, m, replacement=True, generator=generator)

    if not others:
        return propose(num)
    lay = Layout(schema)
    x = torch.zeros(1, lay.num_fields)
    for c, (token, value) in others.items():
        x[0, lay.token_field[c]] = token
        if lay.value_field[c] >= 0:
            x[0, lay.value_field[c]] = value
    which = torch.tensor(sorted(others))
    pool, log_w, ess = [], [], 0.0
    while ess < num and sum(len(p[0]) for p in pool) < 50 * max(num, 20_000):
        z, y = propose(max(4 * num, 20_000))
        pool.append((z, y))
        log_w.append(vae.decode(z, y).column_log_prob(x)[:, which].sum(-1))
        w = torch.cat(log_w)
        w = (w - w.max()).exp()
        ess = float(w.sum() ** 2 / (w * w).sum())
    if ess < num / 10:
        print(f"vaekit: the conditions are rare under the model: {num} rows drawn from {ess:.0f} effective latent "
              "draws, so rows may share latent codes", file=sys.stderr)
    idx = torch.multinomial(w, num, replacement=True, generator=generator)
    z = torch.cat([p[0] for p in pool])[idx]
    return z, None if c_target is None else torch.cat([p[1] for p in pool])[idx]


@torch.no_grad()
def sample_frame(vae, schema: dict, num: int, conditions: dict[str, str] | None = None, temperature: float = 1.0,
                 seed: int = 0, precision: str = "auto") -> pd.DataFrame:
    """`num` synthetic rows: z ~ p(z) (or given the conditions), then each column from p(x_c|z)."""
    precision = resolve_precision(precision, next(vae.parameters()).device)
    if num < 1:
        raise VaekitError(f"--num must be >= 1, got {num}")
    g = torch.Generator().manual_seed(seed)
    fixed = condition_fields(schema, conditions or {})
    lay = Layout(schema)
    parts = []
    was_training = vae.training
    vae.eval()
    for start in range(0, num, SAMPLE_CHUNK):
        n = min(SAMPLE_CHUNK, num - start)
        z, y = draw_latents(vae, schema, fixed, n, temperature, g)
        with autocast(z.device, precision):  # as the model trained: bf16 where the CPU computes it
            px_z = vae.decode(z, y)
        px_z.temperature = temperature
        fields = px_z.sample(generator=g)
        for c, (token, value) in fixed.items():  # the conditions hold exactly
            fields[:, lay.token_field[c]] = token
            if lay.value_field[c] >= 0:
                fields[:, lay.value_field[c]] = value
        if y is not None:  # the target column is the label the rows were drawn with
            fields[:, lay.token_field[target_index(schema)]] = y.float()
        parts.append(cols.decode(fields.numpy(), schema))
    vae.train(was_training)
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]

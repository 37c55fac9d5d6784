"""Column types, the schema fitted on the training rows, and the two-way map between table rows
and the tensor fields the VAE sees.

Every column becomes one categorical *token* field, and numeric columns one more value field:

- categorical / boolean: the token is the category (exact spelling), plus a "missing" token when
  the training rows have missing cells;
- numeric: the token says which of the column's frequent exact values ("spikes": a zero-inflated
  column's 0, the few values of a discrete column) the cell holds, or that it is continuous, or
  missing; a continuous cell's value goes through the column's quantile transform to a standard
  normal (kept in the schema as 1,000 quantiles), so samples map back into the column's own range.

The likelihood (model.py) is then a categorical per token and a Gaussian per continuous value,
a product over columns. Values never seen in training (a new category, a missing cell in a column
that had none) encode as token -1; the likelihood gives them a floor probability.
"""

from __future__ import annotations

from itertools import repeat
from operator import itemgetter

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from ...errors import VaekitError

NA_TOKENS = ("", "?", "NA", "N/A", "NaN", "nan", "null", "NULL", "#N/A")
NA_SET = frozenset(NA_TOKENS)
MAX_SPIKES = 50  # a numeric column with at most this many distinct values is all spikes
SPIKE_SHARE = 0.01  # otherwise a value is a spike when this share of the rows hold it
NUM_QUANTILES = 1000
U_BOUND = 1e-7  # quantile-transform outputs stay in [ndtri(1e-7), -ndtri(1e-7)] = [-5.2, 5.2]
Z_EDGE = float(-ndtri(U_BOUND))
BOOLEAN_SPELLINGS = ({"true", "false"}, {"yes", "no"}, {"t", "f"}, {"y", "n"})
TYPES = ("numeric", "categorical", "boolean")


def is_text(series: pd.Series) -> bool:
    return series.dtype == object or pd.api.types.is_string_dtype(series.dtype)


def missing_mask(series: pd.Series) -> np.ndarray:
    """Missing cells: NaN/None in typed columns, the NA spellings (NA_TOKENS) in text ones."""
    mask = series.isna().to_numpy().copy()
    if is_text(series):
        mask |= series.isin(NA_TOKENS).to_numpy()
    return mask


def na_spelling(series: pd.Series, missing: np.ndarray) -> str:
    """How the column writes a missing cell (its most common NA spelling; empty for typed NaN)."""
    if not missing.any() or not is_text(series):
        return ""
    values = series[missing].dropna()
    return str(values.value_counts().index[0]) if len(values) else ""


def parse_numbers(text: pd.Series) -> np.ndarray:
    """Floats of a text column; NaN where a cell is not a number."""
    return pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def leading_zeros(text: pd.Series) -> bool:
    """Codes such as '007' or '01234' read as numbers would lose their spelling."""
    return bool(text.str.match(r"^-?0\d").any())


def infer_type(name: str, series: pd.Series, missing: np.ndarray, source: str) -> str:
    present = series[~missing]
    if len(present) == 0:
        raise VaekitError(f"{source}: column {name!r} has no values (every cell is missing)")
    if pd.api.types.is_bool_dtype(series.dtype):
        return "boolean"
    if pd.api.types.is_numeric_dtype(series.dtype):
        return "numeric"
    text = present.astype(str)
    numbers = parse_numbers(text)
    parsed = np.isfinite(numbers)
    if parsed.all() and not leading_zeros(text):
        return "numeric"
    if not parsed.any() or leading_zeros(text):
        if set(text.str.lower().unique()) in BOOLEAN_SPELLINGS:
            return "boolean"
        return "categorical"
    number, word = text[parsed].iloc[0], text[~parsed].iloc[0]
    raise VaekitError(f"{source}: column {name!r} mixes numbers ({number!r}) and text ({word!r}); "
                      f"name its type with --categorical {name} or --numeric {name}")


def fit_numeric(name: str, series: pd.Series, missing: np.ndarray, source: str) -> dict:
    present = series[~missing]
    text = present.astype(str) if is_text(series) else None
    values = parse_numbers(text) if text is not None else present.to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        bad = present[~np.isfinite(values)].iloc[0]
        raise VaekitError(f"{source}: column {name!r} holds {str(bad)!r}, not a finite number")
    integer = bool(np.all(values == np.round(values))) and (
        not text.str.contains(r"[.eE]").any() if text is not None else pd.api.types.is_integer_dtype(series.dtype))
    decimals = None
    if not integer and text is not None and not text.str.contains(r"[eE]").any():
        decimals = int(text.str.split(".").str[1].str.len().fillna(0).max())
    distinct, counts = np.unique(values, return_counts=True)
    if len(distinct) <= MAX_SPIKES:
        spikes = distinct
    else:
        frequent = np.argsort(-counts, kind="stable")[:MAX_SPIKES]
        frequent = frequent[counts[frequent] >= SPIKE_SHARE * len(values)]
        spikes = np.sort(distinct[frequent])
    rest = values[~np.isin(values, spikes)]
    if 0 < len(np.unique(rest)) < 2:  # one odd value is a spike, not a distribution
        spikes, rest = np.sort(np.append(spikes, rest[0])), rest[:0]
    quantiles = np.quantile(rest, np.linspace(0, 1, min(NUM_QUANTILES, len(rest)))) if len(rest) else []
    return {"name": name, "type": "numeric", "integer": integer, "decimals": decimals,
            "spikes": [float(v) for v in spikes], "quantiles": [float(v) for v in quantiles],
            "missing": bool(missing.any()), "na_token": na_spelling(series, missing),
            "dtype": "int" if integer else "float"}


def fit_categorical(name: str, series: pd.Series, missing: np.ndarray, kind: str) -> dict:
    present = series[~missing]
    text = present.astype(str)
    counts = text.value_counts()
    order = sorted(counts.index, key=lambda v: (-counts[v], v))
    if pd.api.types.is_bool_dtype(series.dtype):
        dtype = "bool"
    elif pd.api.types.is_integer_dtype(series.dtype):
        dtype = "int"
    elif pd.api.types.is_float_dtype(series.dtype):
        dtype = "float"
    else:
        dtype = "str"
    return {"name": name, "type": kind, "categories": [str(c) for c in order],
            "counts": [int(counts[c]) for c in order] + ([int(missing.sum())] if missing.any() else []),
            "missing": bool(missing.any()), "na_token": na_spelling(series, missing), "dtype": dtype}


def fit_schema(frame: pd.DataFrame, options, source: str) -> dict:
    """Column types and models from the training rows, in the table's column order."""
    for flag, names in (("categorical", options.categorical), ("numeric", options.numeric),
                        ("ignore", options.ignore), ("target", [options.target] if options.target else [])):
        for n in names:
            if n not in frame.columns:
                raise VaekitError(f"{source}: --{flag} names column {n!r}, which the table does not have")
    if options.target in options.ignore:
        raise VaekitError(f"the target column {options.target!r} cannot also be ignored")
    columns = []
    for name in frame.columns:
        if name in options.ignore:
            continue
        series = frame[name]
        missing = missing_mask(series)
        if missing.all():
            raise VaekitError(f"{source}: column {name!r} has no values (every cell is missing)")
        if name in options.categorical:
            kind = "categorical"
        elif name in options.numeric:
            kind = "numeric"
        else:
            kind = infer_type(name, series, missing, source)
        columns.append(fit_numeric(name, series, missing, source) if kind == "numeric"
                       else fit_categorical(name, series, missing, kind))
        if kind != "numeric" and len(columns[-1]["categories"]) > 0.9 * len(series) > 1000:
            import warnings

            warnings.warn(f"column {name!r} looks like an identifier ({len(columns[-1]['categories'])} distinct "
                          f"values in {len(series)} rows): samples will copy its values; consider --ignore {name}")
    if not columns:
        raise VaekitError(f"{source}: no columns left to model")
    return {"kind": "table", "columns": columns, "ignored": list(options.ignore), "target": options.target,
            "num_rows": len(frame)}


# ---------------------------------------------------------------- tokens and fields


def num_tokens(col: dict) -> int:
    if col["type"] == "numeric":
        return len(col["spikes"]) + bool(col["quantiles"]) + col["missing"]
    return len(col["categories"]) + col["missing"]


def cont_token(col: dict) -> int:
    """The token of a numeric column's continuous cells; -1 where it has none."""
    return len(col["spikes"]) if col["type"] == "numeric" and col["quantiles"] else -1


def missing_token(col: dict) -> int:
    return num_tokens(col) - 1 if col["missing"] else -1


def num_fields(schema: dict) -> int:
    return sum(1 + has_value(c) for c in schema["columns"])


def has_value(col: dict) -> bool:
    return cont_token(col) >= 0


def to_normal(v: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """The quantile transform to N(0, 1), ties at their mid-rank (as scikit-learn's
    QuantileTransformer); values beyond the training range extrapolate linearly past +-5.2."""
    r = np.linspace(0, 1, len(quantiles))
    u = 0.5 * (np.interp(v, quantiles, r) - np.interp(-v, -quantiles[::-1], -r[::-1]))
    z = ndtri(np.clip(u, U_BOUND, 1 - U_BOUND))
    span = max(quantiles[-1] - quantiles[0], 1e-12)
    z = np.where(v > quantiles[-1], Z_EDGE + 5 * (v - quantiles[-1]) / span, z)
    return np.where(v < quantiles[0], -Z_EDGE - 5 * (quantiles[0] - v) / span, z)


def from_normal(z: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    return np.interp(ndtr(z), np.linspace(0, 1, len(quantiles)), quantiles)


def column_of(frame: pd.DataFrame, name: str, source: str) -> pd.Series:
    if name not in frame.columns:
        raise VaekitError(f"{source}: has no column {name!r}, which the run was trained with")
    return frame[name]


def encode(frame: pd.DataFrame, schema: dict, source: str) -> np.ndarray:
    """Rows -> fields (N, F) float32: per column its token, and for numeric columns the value's
    normal score (0 where the cell is not continuous)."""
    names = {c["name"] for c in schema["columns"]} | set(schema.get("ignored", []))
    extra = [c for c in frame.columns if c not in names]
    if extra:
        raise VaekitError(f"{source}: column {extra[0]!r} is not one the run was trained with")
    out = np.zeros((len(frame), num_fields(schema)), np.float32)
    pos = 0
    for col in schema["columns"]:
        series = column_of(frame, col["name"], source)
        missing = missing_mask(series)
        if col["type"] == "numeric":
            token, z = encode_numeric(series, missing, col, source)
            out[:, pos] = token
            if has_value(col):
                out[:, pos + 1] = z
        else:
            codes = pd.Index(col["categories"]).get_indexer(series.astype(str))  # -1: unseen
            out[:, pos] = np.where(missing, missing_token(col), codes)
        pos += 1 + has_value(col)
    return out


def encode_numeric(series: pd.Series, missing: np.ndarray, col: dict, source: str):
    values = parse_numbers(series.astype(str)) if is_text(series) else series.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~missing & ~np.isfinite(values)
    if bad.any():
        raise VaekitError(f"{source}: column {col['name']!r} holds {str(series[bad].iloc[0])!r}, not a number")
    return numeric_tokens(values, missing, col)


def numeric_tokens(values: np.ndarray, missing: np.ndarray, col: dict):
    """(tokens, normal scores) of a numeric column's float values (NaN where missing)."""
    spikes = np.asarray(col["spikes"])
    at = np.searchsorted(spikes, values).clip(max=max(len(spikes) - 1, 0))
    is_spike = (spikes[at] == values) if len(spikes) else np.zeros(len(values), bool)
    token = np.where(is_spike, at, cont_token(col))
    token = np.where(missing, missing_token(col), token)
    z = np.zeros(len(values))
    if col["quantiles"]:
        cont = token == cont_token(col)
        z[cont] = to_normal(values[cont], np.asarray(col["quantiles"]))
    return token, z


def encode_records(records: list[dict], schema: dict, allow_unknown: bool = False) -> np.ndarray:
    """JSON records (objects keyed by column, null for a missing cell) -> fields, as `encode`
    gives them for the same rows read from a file, without pandas (a server's hot path). Each
    record names every column; a category the training rows never held is refused unless
    `allow_unknown` (it then encodes as unseen, as `encode` does)."""
    names = [c["name"] for c in schema["columns"]]
    wanted = set(names)
    try:  # every record an object with as many keys as there are columns, each column among them
        if set(map(type, records)) - {dict} or set(map(len, records)) - {len(names)}:
            raise KeyError
        rows = map(itemgetter(*names), records) if len(names) > 1 else ((r[names[0]],) for r in records)
        columns = list(zip(*rows)) or [()] * len(names)  # one tuple of cells per column
    except KeyError:  # name the first record that is not so
        for i, record in enumerate(records):
            check_record(i, record, wanted)
        raise
    out = np.zeros((len(records), num_fields(schema)), np.float32)
    pos = 0
    for col, cells in zip(schema["columns"], columns):
        if col["type"] == "numeric":
            values, missing = numbers(cells, col["name"])
            token, z = numeric_tokens(values, missing, col)
            out[:, pos] = token
            if has_value(col):
                out[:, pos + 1] = z
        else:
            out[:, pos] = category_tokens(cells, col, allow_unknown)
        pos += 1 + has_value(col)
    return out


def check_record(i: int, record, wanted: set) -> None:
    if not isinstance(record, dict):
        raise VaekitError(f"input {i} is a {type(record).__name__}, not an object keyed by column")
    if record.keys() != wanted:
        extra, absent = sorted(record.keys() - wanted), sorted(wanted - record.keys())
        raise VaekitError(f"input {i}: unknown column {extra[0]!r}" if extra else
                          f"input {i} lacks column {absent[0]!r} (null marks a missing cell)")


def category_tokens(cells, col: dict, allow_unknown: bool) -> np.ndarray:
    """A categorical column's JSON cells as tokens: the category's index, the missing token for
    null or an NA spelling, -1 for a category never seen (refused unless `allow_unknown`)."""
    lookup = {c: k for k, c in enumerate(col["categories"])} | dict.fromkeys((None, *NA_TOKENS), -2)
    get = lookup.get
    try:
        codes = np.fromiter(map(get, cells, repeat(-1, len(cells))), np.int64, len(cells))
    except TypeError:  # an unhashable cell (a list): never a category
        codes = np.array([get(v, -1) if v.__hash__ else -1 for v in cells], np.int64)
    for i in np.flatnonzero(codes == -1):  # not found as given: a number names the category it spells
        v = cells[i]
        codes[i] = -1 if v.__class__ is str else get(str(v), -1)
        if codes[i] == -1 and not allow_unknown:
            raise VaekitError(f"input {i}: column {col['name']!r} holds {v!r}, a category the training "
                              "rows never hold")
    return np.where(codes == -2, missing_token(col), codes)


def numbers(cells, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A numeric column's JSON cells as floats (NaN where missing) and where they are missing (null
    or an NA spelling); a cell that is not a number is refused, naming it."""
    types = set(map(type, cells))
    if bool in types:
        flag = next(i for i, v in enumerate(cells) if v.__class__ is bool)
        raise VaekitError(f"input {flag}: column {name!r} holds {cells[flag]!r}, not a number")
    values = None
    if types <= {int, float, type(None)}:  # the usual JSON column: one conversion, null -> NaN
        try:
            values = np.array(cells, dtype=np.float64)
        except OverflowError:  # an integer too large for a float: named below
            pass
    if values is not None:
        missing = np.array([v is None for v in cells], bool) if type(None) in types else np.zeros(len(cells), bool)
    else:  # text cells: NA spellings are missing, the rest must read as numbers
        missing = np.array([v is None or (v.__class__ is str and v in NA_SET) for v in cells], bool)
        values = np.full(len(cells), np.nan)
        for i, v in enumerate(cells):
            if not missing[i]:
                try:
                    values[i] = float(v)
                except (TypeError, ValueError, OverflowError):
                    raise VaekitError(f"input {i}: column {name!r} holds {v!r}, not a number") from None
    bad = ~missing & ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise VaekitError(f"input {i}: column {name!r} holds {cells[i]!r}, not a number")
    return values, missing


def decode(fields: np.ndarray, schema: dict) -> pd.DataFrame:
    """Fields (N, F) -> rows with the training table's columns, types and spellings; missing
    cells as NA (pandas' own; to_file_frame writes the table's NA spelling)."""
    data, pos = {}, 0
    for col in schema["columns"]:
        token = fields[:, pos].astype(np.int64)
        if col["type"] == "numeric":
            data[col["name"]] = decode_numeric(token, fields[:, pos + 1] if has_value(col) else None, col)
        else:
            codes = np.where(token == missing_token(col), -1, token)
            data[col["name"]] = typed_categories(pd.Categorical.from_codes(codes, col["categories"]), col)
        pos += 1 + has_value(col)
    return pd.DataFrame(data)


def decode_numeric(token: np.ndarray, z: np.ndarray | None, col: dict) -> pd.Series:
    spikes = np.asarray(col["spikes"] or [np.nan])
    values = spikes[token.clip(0, len(spikes) - 1)]
    if z is not None:
        cont = token == cont_token(col)
        values = np.where(cont, from_normal(z, np.asarray(col["quantiles"])), values)
    missing = token == missing_token(col)
    if col["integer"]:
        values = np.round(values)
        series = pd.Series(values.astype(np.int64) if not missing.any() else values)
        return series.astype("Int64").mask(missing) if missing.any() else series
    if col["decimals"] is not None:
        values = np.round(values, col["decimals"])
    return pd.Series(np.where(missing, np.nan, values))


def typed_categories(cat: pd.Categorical, col: dict) -> pd.Series:
    """Categories back in the column's own type (text stays categorical; bool/int/float typed)."""
    series = pd.Series(cat)
    if col["dtype"] == "bool":
        return series.map({"True": True, "False": False}).astype("boolean")
    if col["dtype"] in ("int", "float"):
        return pd.to_numeric(series.astype(object), errors="coerce").astype("Int64" if col["dtype"] == "int" else float)
    return series


def to_file_frame(frame: pd.DataFrame, schema: dict) -> pd.DataFrame:
    """Missing cells in each column's own NA spelling (e.g. Adult's '?'), for writing files."""
    out = frame.copy()
    for col in schema["columns"]:
        name = col["name"]
        if col["na_token"] and name in out and out[name].isna().any():
            out[name] = out[name].astype(object).where(out[name].notna(), col["na_token"])
    return out

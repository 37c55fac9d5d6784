"""How good a synthetic table is, measured against the real rows, with the field's definitions:

- fidelity (SDMetrics 0.32's quality report): `column_shapes`, the mean over columns of the KS
  complement (numeric) or total-variation complement (categorical), missing cells dropped;
  `column_pair_trends`, the mean over the column pairs that go together in the real data
  (|r| > 0.5 or Cramér's V > 0.3) of the correlation similarity 1 - |r_real - r_synth| / 2
  (Pearson, two numeric columns) or the contingency similarity 1 - TV of the joint frequencies
  (otherwise; numeric columns in 10 equal-width bins of each table's own range, missing cells as
  a category); `column_pair_trends_all`, the same mean over every pair;
- utility (SDGym's ML efficacy): a decision tree (depth 20), AdaBoost, logistic regression and an
  MLP of 50 units trained on synthetic (or real) training rows predict the target on the real test
  rows; `ml_efficacy_f1` (`_real`) is the mean of their binary F1 (the rarer class positive) or
  macro F1, with SDGym's features (log of large non-negative columns, others scaled to [0, 5],
  two-valued columns as 0/1, one-hot otherwise);
- privacy: `dcr_p5` and `dcr_test_p5`, the 5th percentile of the distance from each synthetic (or
  real test) row to its closest real training row (numeric columns scaled to [0, 1] by the
  training range, a differing category counting 1, Euclidean), and `exact_copy_share`
  (`_test`), the share of synthetic (test) rows equal to some training row in every column.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
import torch

from ...errors import VaekitError
from .columns import missing_mask, parse_numbers

# SDMetrics 0.32's quality report: pairs count when the real data's |r| or Cramér's V exceeds these;
# contingency tables of larger tables come from a 50,000-row subsample.
CORRELATION_THRESHOLD, ASSOCIATION_THRESHOLD, CONTINGENCY_ROWS = 0.5, 0.3, 50_000


def canonical(frame: pd.DataFrame, schema: dict, source: str) -> pd.DataFrame:
    """The modelled columns, numeric ones as floats and the rest as text, missing cells as NaN:
    the same values whether a table was read from a file or sampled."""
    out = {}
    for col in schema["columns"]:
        name = col["name"]
        if name not in frame.columns:
            raise VaekitError(f"{source}: has no column {name!r}, which the run was trained with")
        series = frame[name]
        missing = missing_mask(series)
        if col["type"] == "numeric":
            values = parse_numbers(series.astype(str)) if series.dtype == object or pd.api.types.is_string_dtype(series.dtype) \
                else series.to_numpy(dtype=np.float64, na_value=np.nan)
            out[name] = np.where(missing, np.nan, values)
        else:
            text = series.astype(str).to_numpy(dtype=object)
            text[missing] = np.nan
            out[name] = text
    return pd.DataFrame(out)


def column_shapes(real: pd.DataFrame, synth: pd.DataFrame, schema: dict) -> dict[str, float]:
    from scipy.stats import ks_2samp

    scores = {}
    for col in schema["columns"]:
        r, s = real[col["name"]].dropna(), synth[col["name"]].dropna()
        if len(r) == 0 or len(s) == 0:
            scores[col["name"]] = float("nan")
        elif col["type"] == "numeric":
            scores[col["name"]] = 1.0 - float(ks_2samp(r.to_numpy(float), s.to_numpy(float)).statistic)
        else:
            p, q = r.value_counts(normalize=True), s.value_counts(normalize=True)
            scores[col["name"]] = 1.0 - 0.5 * float(p.subtract(q, fill_value=0).abs().sum())
    return scores


def binned(series: pd.Series) -> np.ndarray:
    """10 equal-width bins over the column's own present range (NaN past the last edge)."""
    values = series.to_numpy(float)
    present = values[~np.isnan(values)]
    if len(present) == 0:
        return np.zeros(len(values), np.int64)
    return np.digitize(values, np.histogram_bin_edges(present))


def pair_trends(real: pd.DataFrame, synth: pd.DataFrame, schema: dict) -> dict[tuple[str, str], tuple[float, bool]]:
    """(score, counted) of each column pair. Counted: the real columns go together (|Pearson r| >
    0.5, or Cramér's V > 0.3 of the real contingency table), as SDMetrics 0.32's quality report
    averages only those pairs."""
    from scipy.stats.contingency import association

    numeric = {c["name"] for c in schema["columns"] if c["type"] == "numeric"}
    names = [c["name"] for c in schema["columns"]]
    discrete = {}
    for frame, key in ((real, "real"), (synth, "synth")):
        frame = frame.sample(CONTINGENCY_ROWS, random_state=0) if len(frame) > CONTINGENCY_ROWS else frame
        discrete[key] = pd.DataFrame({n: binned(frame[n]) if n in numeric else frame[n] for n in names})
    scores = {}
    for a, b in itertools.combinations(names, 2):
        if a in numeric and b in numeric:
            r, s = real[[a, b]].dropna().astype(float), synth[[a, b]].dropna().astype(float)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cr = r[a].corr(r[b]) if len(r) > 1 else np.nan
                cs = s[a].corr(s[b]) if len(s) > 1 else np.nan
            score = float(1 - abs(cr - cs) / 2) if np.isfinite(cr) and np.isfinite(cs) else float("nan")
            scores[(a, b)] = (score, bool(np.isfinite(cr) and abs(cr) > CORRELATION_THRESHOLD))
        else:
            counts = discrete["real"].groupby([a, b], dropna=False).size()
            p = counts / counts.sum()
            q = discrete["synth"].groupby([a, b], dropna=False).size()
            q = q / q.sum()
            table = counts.unstack(fill_value=0).to_numpy()
            strength = association(table, method="cramer") if min(table.shape) > 1 else 0.0
            scores[(a, b)] = (1.0 - 0.5 * float(p.subtract(q, fill_value=0).abs().sum()),
                              bool(strength > ASSOCIATION_THRESHOLD))
    return scores


def efficacy_features(frame: pd.DataFrame, reference: pd.DataFrame, schema: dict, target: str) -> np.ndarray:
    """SDGym's features; ranges and categories from the real training rows (`reference`)."""
    parts = []
    for col in schema["columns"]:
        name = col["name"]
        if name == target:
            continue
        if col["type"] == "numeric":
            ref = reference[name].to_numpy(float)
            lo, hi = np.nanmin(ref), np.nanmax(ref)
            v = frame[name].to_numpy(float)
            v = np.where(np.isnan(v), np.nanmedian(ref), v)
            parts.append(np.log(np.maximum(v, 1e-2)) if lo >= 0 and hi >= 1e3 else (v - lo) / max(hi - lo, 1e-12) * 5)
        else:
            cats = col["categories"]
            codes = pd.Index(cats).get_indexer(frame[name])
            if col["missing"]:
                codes = np.where(frame[name].isna().to_numpy(), len(cats), codes)
            size = len(cats) + col["missing"]
            if size <= 2:
                parts.append(codes.astype(float))
            else:
                onehot = np.zeros((len(frame), size))
                ok = codes >= 0
                onehot[np.flatnonzero(ok), codes[ok]] = 1
                parts.append(onehot)
    return np.column_stack(parts)


def efficacy_f1(train: pd.DataFrame, test: pd.DataFrame, reference: pd.DataFrame, schema: dict, target: str) -> float:
    """Mean F1 on the real test rows of the four classifiers trained on `train`'s rows."""
    from sklearn.ensemble import AdaBoostClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.neural_network import MLPClassifier
    from sklearn.tree import DecisionTreeClassifier

    train = train[train[target].notna()].sample(frac=1, random_state=0).iloc[:50_000]
    test = test[test[target].notna()]
    labels = reference[target].dropna()
    classes = labels.value_counts()
    binary = len(classes) == 2
    x_train, y_train = efficacy_features(train, reference, schema, target), train[target].to_numpy()
    x_test, y_test = efficacy_features(test, reference, schema, target), test[target].to_numpy()
    models = [DecisionTreeClassifier(max_depth=20, class_weight="balanced", random_state=0),
              AdaBoostClassifier(random_state=0),
              LogisticRegression(solver="lbfgs", class_weight="balanced", max_iter=50),
              MLPClassifier(hidden_layer_sizes=(50,), max_iter=50, random_state=0)]
    scores = []
    for model in models:
        if len(np.unique(y_train)) == 1:
            pred = np.full(len(y_test), y_train[0], dtype=object)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # 50 iterations do not converge, by the protocol's design
                model.fit(x_train, y_train)
            pred = model.predict(x_test)
        if binary:
            scores.append(f1_score(y_test, pred, pos_label=classes.index[-1], average="binary", zero_division=0))
        else:
            scores.append(f1_score(y_test, pred, average="macro", zero_division=0))
    return float(np.mean(scores))


def distance_features(frame: pd.DataFrame, reference: pd.DataFrame, schema: dict) -> torch.Tensor:
    """Numeric columns scaled to [0, 1] by the training range (missing: -1), categories one-hot
    over sqrt(2) so that a differing category adds 1 to the squared distance."""
    parts = []
    for col in schema["columns"]:
        name = col["name"]
        if col["type"] == "numeric":
            ref = reference[name].to_numpy(float)
            lo, hi = np.nanmin(ref), np.nanmax(ref)
            v = (frame[name].to_numpy(float) - lo) / max(hi - lo, 1e-12)
            parts.append(np.where(np.isnan(v), -1.0, v)[:, None])
        else:
            codes = pd.Index(list(col["categories"]) + ["\0missing"]).get_indexer(frame[name].fillna("\0missing"))
            onehot = np.zeros((len(frame), len(col["categories"]) + 1))
            ok = codes >= 0
            onehot[np.flatnonzero(ok), codes[ok]] = 2 ** -0.5
            parts.append(onehot)
    return torch.from_numpy(np.concatenate(parts, axis=1)).float()


def closest_distances(query: torch.Tensor, reference: torch.Tensor, block: int = 4096) -> np.ndarray:
    out = []
    for start in range(0, len(query), block):
        d = torch.cdist(query[start : start + block], reference, compute_mode="use_mm_for_euclid_dist")
        out.append(d.min(1).values.clamp(min=0))
    return torch.cat(out).numpy()


def copy_share(rows: pd.DataFrame, train: pd.DataFrame, schema: dict) -> float:
    """Share of `rows` that equal some training row in every column (numbers to 9 digits)."""
    def keys(frame):
        parts = [frame[c["name"]].round(9).astype(str) if c["type"] == "numeric" else frame[c["name"]].astype(str)
                 for c in schema["columns"]]
        return pd.util.hash_pandas_object(pd.concat(parts, axis=1), index=False)

    return float(keys(rows).isin(set(keys(train))).mean())


def table_quality(train: pd.DataFrame, test: pd.DataFrame, synthetic: pd.DataFrame, schema: dict,
                  source: str = "synthetic") -> dict:
    """The figures above for a synthetic table against the real training and test rows."""
    real = canonical(train, schema, "the training rows")
    real_test = canonical(test, schema, "the test rows")
    synth = canonical(synthetic, schema, source)
    shapes = column_shapes(real, synth, schema)
    pairs = pair_trends(real, synth, schema)
    counted = [score for score, meets in pairs.values() if meets]
    out = {"column_shapes": float(np.nanmean(list(shapes.values()))),
           "column_pair_trends": float(np.nanmean(counted)) if counted else float("nan"),
           "column_pair_trends_all": float(np.nanmean([score for score, _ in pairs.values()])),
           "column_shapes_by_column": shapes, "num_synthetic_rows": len(synth)}
    target = schema.get("target")
    if target and next(c for c in schema["columns"] if c["name"] == target)["type"] != "numeric":
        out["ml_efficacy_f1"] = efficacy_f1(synth, real_test, real, schema, target)
        out["ml_efficacy_f1_real"] = efficacy_f1(real, real_test, real, schema, target)
    ref = distance_features(real, real, schema)
    out["dcr_p5"] = float(np.percentile(closest_distances(distance_features(synth, real, schema), ref), 5))
    out["dcr_test_p5"] = float(np.percentile(closest_distances(distance_features(real_test, real, schema), ref), 5))
    out["exact_copy_share"] = copy_share(synth, real, schema)
    out["exact_copy_share_test"] = copy_share(real_test, real, schema)
    return out

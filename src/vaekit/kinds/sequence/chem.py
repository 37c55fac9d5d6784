"""Chemistry for SMILES runs, with RDKit and fcd_torch (the optional extra `vaekit[chem]`):
validity and canonical forms, properties (QED, logP, synthetic accessibility, penalized logP),
molecule grids, and the MOSES benchmark's metrics (Polykovskiy et al., 2020) as it defines them:

- valid: share of the samples RDKit parses; unique@k: share of distinct canonical SMILES among
  the first k valid ones; novelty: share of the distinct valid samples not in the training set;
- FCD/Test: Fréchet ChemNet Distance to the test set (fcd_torch's ChemNet); SNN/Test: mean
  Tanimoto similarity (Morgan, radius 2, 1024 bits) of each sample to its nearest test molecule;
  Frag/Test, Scaf/Test: cosine similarity of BRICS-fragment and Bemis-Murcko-scaffold counts;
- IntDiv, IntDiv2: 1 - mean pairwise Tanimoto similarity (p = 1), and 1 - its root-mean-square;
- Filters: share passing MOSES's filters: atoms C, N, S, O, F, Cl, Br, H only, no charge, no ring
  of 8 or more, no match of the medicinal-chemistry and PAINS alerts. vaekit uses RDKit's PAINS
  catalogue and, when the reference folder has MOSES's `mcf.csv`, its alerts too.

The test set's statistics are computed from its SMILES once and cached as plain arrays (no pickle).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from ...errors import VaekitError

FINGERPRINT_BITS = 1024
ALLOWED_ATOMS = {"C", "N", "S", "O", "F", "Cl", "Br", "H"}


def rdkit():
    try:
        from rdkit import Chem, RDLogger
    except ImportError:
        raise VaekitError("molecule figures need RDKit: pip install 'vaekit[chem]'") from None
    RDLogger.DisableLog("rdApp.*")
    return Chem


def molecules(smiles: list[str]) -> list:
    Chem = rdkit()
    return [Chem.MolFromSmiles(s) if s else None for s in smiles]


def canonical(mols: list) -> list[str | None]:
    Chem = rdkit()
    return [Chem.MolToSmiles(m) if m is not None else None for m in mols]


def canonical_set(smiles) -> set[str]:
    """The canonical forms of many SMILES, one molecule alive at a time (1.6M RDKit molecules at
    once held over 20 GB)."""
    Chem = rdkit()
    out = set()
    for s in smiles:
        m = Chem.MolFromSmiles(s) if s else None
        if m is not None:
            out.add(Chem.MolToSmiles(m))
    return out


# ---------------------------------------------------------------- properties


def sa_score(mol) -> float:
    """Synthetic accessibility (Ertl & Schuffenhauer, 2009), 1 (easy) to 10, from RDKit Contrib."""
    import os
    import sys

    from rdkit.Chem import RDConfig

    path = os.path.join(RDConfig.RDContribDir, "SA_Score")
    if path not in sys.path:
        sys.path.append(path)
    import sascorer

    return float(sascorer.calculateScore(mol))


def largest_ring(mol) -> int:
    rings = mol.GetRingInfo().AtomRings()
    return max((len(r) for r in rings), default=0)


def penalized_logp(mol) -> float:
    """logP - SA - (rings larger than 6), each standardised by the ZINC250k means and deviations
    the literature uses (JT-VAE; Kusner et al., 2017)."""
    from rdkit.Chem import Descriptors

    logp, sa, cycle = Descriptors.MolLogP(mol), sa_score(mol), max(largest_ring(mol) - 6, 0)
    return (logp - 2.4570953396190123) / 1.434324401111988 - (sa - 3.0525811293166134) / 0.8335207024513095 \
        - (cycle - 0.0485696876403053) / 0.2860212110245455


def property_of(name: str):
    from rdkit.Chem import QED, Descriptors

    table = {"qed": QED.qed, "logp": Descriptors.MolLogP, "sa": sa_score, "penalized_logp": penalized_logp}
    if name not in table:
        raise VaekitError(f"unknown property {name!r}; choose from {', '.join(table)}")
    return table[name]


# ---------------------------------------------------------------- MOSES metrics


def fingerprints(mols: list) -> torch.Tensor:
    """Morgan fingerprints (radius 2, 1024 bits) as a 0/1 matrix (N, 1024)."""
    from rdkit import DataStructs
    from rdkit.Chem import rdFingerprintGenerator

    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=FINGERPRINT_BITS)
    out = np.zeros((len(mols), FINGERPRINT_BITS), np.uint8)
    for i, m in enumerate(mols):
        DataStructs.ConvertToNumpyArray(gen.GetFingerprint(m), out[i])
    return torch.from_numpy(out)


def tanimoto_max(a: torch.Tensor, b: torch.Tensor, block: int = 512) -> torch.Tensor:
    """For each row of a, its highest Tanimoto similarity to a row of b (0/1 matrices); a block of
    512 rows against the 176k MOSES test molecules holds about 1 GB."""
    b_f = b.to(torch.bfloat16)  # counts below 256: exact in bf16, products summed in fp32
    b_n = b.sum(1).float()
    out = []
    for start in range(0, len(a), block):
        x = a[start : start + block]
        inter = (x.to(torch.bfloat16) @ b_f.T).float()
        union = x.sum(1, keepdim=True).float() + b_n[None, :] - inter
        out.append((inter / union.clamp(min=1)).max(1).values)
    return torch.cat(out)


def internal_diversity(fps: torch.Tensor, p: int) -> float:
    """1 - (mean over all pairs, self pairs included, of Tanimoto^p)^(1/p), as MOSES computes it."""
    x = fps.float()
    n = x.sum(1)
    total = 0.0
    for start in range(0, len(x), 4096):
        inter = x[start : start + 4096] @ x.T
        sim = inter / (n[start : start + 4096, None] + n[None, :] - inter).clamp(min=1)
        total += float(sim.double().pow(p).sum())
    return 1 - (total / len(x) ** 2) ** (1 / p)


def fragments(mols: list) -> Counter:
    from rdkit.Chem import BRICS

    counts = Counter()
    for m in mols:
        counts.update(BRICS.BRICSDecompose(m))
    return counts


def scaffolds(mols: list) -> Counter:
    Chem = rdkit()
    from rdkit.Chem.Scaffolds import MurckoScaffold

    counts = Counter()
    for m in mols:
        scaffold = Chem.MolToSmiles(MurckoScaffold.GetScaffoldForMol(m))
        if scaffold:
            counts[scaffold] += 1
    return counts


def cosine(a: Counter, b: Counter) -> float:
    keys = sorted(set(a) | set(b))
    u = np.array([a.get(k, 0) for k in keys], float)
    v = np.array([b.get(k, 0) for k in keys], float)
    return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v))) if len(keys) else float("nan")


def alert_patterns(reference: Path | None) -> list:
    """RDKit's PAINS alerts, and MOSES's medicinal-chemistry alerts when mcf.csv is at hand."""
    Chem = rdkit()
    from rdkit.Chem.FilterCatalog import FilterCatalog, FilterCatalogParams

    params = FilterCatalogParams()
    params.AddCatalog(FilterCatalogParams.FilterCatalogs.PAINS)
    patterns = [FilterCatalog(params)]
    mcf = reference / "mcf.csv" if reference else None
    if mcf and mcf.is_file():
        import pandas as pd

        smarts = pd.read_csv(mcf)["smarts"].tolist()
        patterns += [p for p in (Chem.MolFromSmarts(s) for s in smarts) if p is not None]
    return patterns


def passes_filters(mol, patterns: list) -> bool:
    Chem = rdkit()
    if largest_ring(mol) >= 8:
        return False
    if any(a.GetFormalCharge() != 0 or a.GetSymbol() not in ALLOWED_ATOMS for a in mol.GetAtoms()):
        return False
    h_mol = Chem.AddHs(mol)
    for p in patterns:
        if hasattr(p, "HasMatch") and p.HasMatch(h_mol):
            return False
        if not hasattr(p, "HasMatch") and h_mol.HasSubstructMatch(p):
            return False
    return Chem.MolFromSmiles(Chem.MolToSmiles(mol)) is not None


def reference_stats(reference: Path, cache_dir: Path) -> dict:
    """The test set's statistics (ChemNet mean and covariance, fingerprints, fragment and scaffold
    counts), computed from reference/test.csv.gz once and cached by the file's hash."""
    import json

    import pandas as pd

    test = reference / "test.csv.gz"
    if not test.is_file():
        raise VaekitError(f"{reference}: no test.csv.gz (a folder laid out like MOSES's data)")
    digest = hashlib.sha256(test.read_bytes()).hexdigest()[:16]
    path = cache_dir / f"moses-test-{digest}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            stats = {k: z[k] for k in z.files}
        stats["frag"] = Counter(json.loads(str(stats["frag"])))
        stats["scaf"] = Counter(json.loads(str(stats["scaf"])))
        return stats
    smiles = pd.read_csv(test)["SMILES"].astype(str).tolist()
    parsed = [(s, m) for s, m in zip(smiles, molecules(smiles)) if m is not None]
    mols = [m for _, m in parsed]
    mu, sigma = chemnet_stats([s for s, _ in parsed])
    stats = {"fps": np.packbits(fingerprints(mols).numpy(), axis=1), "fcd_mu": mu, "fcd_sigma": sigma,
             "frag": json.dumps(fragments(mols)), "scaf": json.dumps(scaffolds(mols))}
    cache_dir.mkdir(parents=True, exist_ok=True)
    import io

    from ...checkpoint import atomic_write

    buf = io.BytesIO()
    np.savez(buf, **{k: (np.array(v) if isinstance(v, str) else v) for k, v in stats.items()})
    atomic_write(path, buf.getvalue())
    return reference_stats(reference, cache_dir)


def chemnet_stats(smiles: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of fcd_torch's ChemNet activations."""
    try:
        from fcd_torch import FCD
    except ImportError:
        raise VaekitError("FCD needs fcd_torch: pip install 'vaekit[chem]'") from None
    fcd = FCD(device="cpu", n_jobs=0)
    # fcd_torch's memory grows with the list it is given (1 GB for 5,000 molecules, past 24 GB for
    # MOSES's 176k test set), so its activations are taken 5,000 molecules at a time
    acts = np.concatenate([fcd.get_predictions(smiles[i : i + 5000]) for i in range(0, len(smiles), 5000)])
    return acts.mean(0), np.cov(acts.T)


def frechet(mu1, sigma1, mu2, sigma2) -> float:
    from scipy.linalg import sqrtm

    covmean = sqrtm(sigma1 @ sigma2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1 + sigma2 - 2 * covmean.real))


def moses_metrics(samples: list[str], train_smiles: set[str], reference: Path, cache_dir: Path) -> dict:
    """The MOSES metrics of `samples` (strings, invalid ones included), as named by the benchmark."""
    mols = molecules(samples)
    valid = [m for m in mols if m is not None]
    if not valid:
        return {"valid": 0.0}
    canon = canonical(valid)
    out = {"valid": len(valid) / len(samples)}
    for k in (1000, 10000):
        if len(canon) >= k:
            out[f"unique@{k}"] = len(set(canon[:k])) / k
    unique = sorted(set(canon))
    out["novelty"] = sum(s not in train_smiles for s in unique) / len(unique)
    stats = reference_stats(reference, cache_dir)
    mu, sigma = chemnet_stats(canon)
    out["FCD/Test"] = frechet(mu, sigma, stats["fcd_mu"], stats["fcd_sigma"])
    fps = fingerprints(valid)
    test_fps = torch.from_numpy(np.unpackbits(stats["fps"], axis=1)[:, :FINGERPRINT_BITS])
    out["SNN/Test"] = float(tanimoto_max(fps, test_fps).mean())
    out["Frag/Test"] = cosine(fragments(valid), stats["frag"])
    out["Scaf/Test"] = cosine(scaffolds(valid), stats["scaf"])
    out["IntDiv"] = internal_diversity(fps, 1)
    out["IntDiv2"] = internal_diversity(fps, 2)
    patterns = alert_patterns(reference)
    out["Filters"] = sum(passes_filters(m, patterns) for m in valid) / len(valid)
    return out


def grid_png(smiles: list[str], legends: list[str] | None = None, per_row: int = 6) -> bytes:
    """A grid of molecule drawings (invalid ones as empty cells) as PNG bytes."""
    import io

    from rdkit.Chem import Draw

    mols = molecules(smiles)
    image = Draw.MolsToGridImage(mols, molsPerRow=per_row, subImgSize=(220, 180), legends=legends)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


"""Reading sequences: SMILES from a CSV column (gzipped or not) or a file of one per line, and text
as lines or as sentences split from running text. Invalid SMILES (RDKit, when installed), empty
entries and sequences past the maximum length are counted and reported, never silently cut."""

from __future__ import annotations

import gzip
import zlib
import re
import sys
from pathlib import Path

import numpy as np
import torch

from ...config import DataConfig
from ...data import Splits, split_indices
from ...errors import VaekitError
from . import tokens as tok

# a full stop after a title (Mr., Mrs., Dr., St.) does not end a sentence
SENTENCE_END = re.compile(r"(?<!\bMr)(?<!\bMrs)(?<!\bMs)(?<!\bDr)(?<!\bSt)([.!?][\"”’')\]]*)\s+(?=[\"“‘(\[]?[A-Z])")


def read_text(path: Path) -> str:
    path = Path(path)
    try:
        raw = path.read_bytes()
        raw = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except FileNotFoundError:
        raise VaekitError(f"{path}: file not found") from None
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise VaekitError(f"{path}: cannot read ({e})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise VaekitError(f"{path}: not UTF-8 text (line {line})") from None


def sentences(text: str) -> list[str]:
    """Sentences of running text: paragraphs (blank-line separated) joined, then split after
    '.', '!' or '?' before a capital."""
    out = []
    for paragraph in re.split(r"\n\s*\n", text):
        flat = " ".join(paragraph.split())
        if flat:
            # paragraphs were flattened, so a newline marks each sentence end
            out += [s for s in SENTENCE_END.sub("\\1\\n", flat).split("\n") if s.strip()]
    return out


def read_examples(path: str, kind: str, options, source: str | None = None) -> tuple[list[str], list[int]]:
    """The examples of a file and their 1-based line numbers (0 where lines were joined)."""
    source = source or path
    p = Path(path)
    if kind == "smiles" and p.name.lower().removesuffix(".gz").endswith((".csv", ".tsv")):
        from ...tabular import read_table

        frame = read_table(p)
        names = list(frame.columns)
        column = options.column or next((n for n in names if n.lower() == "smiles"), None)
        if column is None or column not in names:
            raise VaekitError(f"{source}: no column {options.column or 'SMILES'!r} (it has {', '.join(names[:6])}); "
                              "name it with --column")
        values = frame[column].astype(str).str.strip().tolist()
        return values, list(range(2, len(values) + 2))  # the header is line 1
    text = read_text(p)
    if kind == "text" and options.split == "sentences":
        found = sentences(text)
        return found, [0] * len(found)
    lines = text.split("\n")
    examples = [(line.strip(), i + 1) for i, line in enumerate(lines) if line.strip()]
    return [e for e, _ in examples], [n for _, n in examples]


def rdkit_valid(smiles: list[str]) -> np.ndarray | None:
    """Which strings RDKit parses into a molecule; None when RDKit is not installed."""
    try:
        from rdkit import Chem, RDLogger
    except ImportError:
        return None
    RDLogger.DisableLog("rdApp.*")
    return np.array([Chem.MolFromSmiles(s) is not None if s else False for s in smiles], bool)


def tokenize(examples: list[str], lines: list[int], kind: str, options, source: str, training: bool):
    """Token lists of the usable examples and their indices; invalid and overlong ones are
    counted and reported (or refused with --strict)."""
    split = tok.TOKENIZERS[kind]
    token_lists = [split(e) if e else None for e in examples]
    bad = np.array([t is None or not t for t in token_lists], bool)
    if kind == "smiles":
        valid = rdkit_valid(examples)
        if valid is not None:
            bad |= ~valid
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        where = f"line {lines[first]}" if lines[first] else f"example {first + 1}"
        what = "invalid SMILES" if kind == "smiles" else "empty examples"
        message = f"{source}: {int(bad.sum())} {what} (first: {where}, {examples[first][:40]!r})"
        if options.strict or bad.all():
            raise VaekitError(message + ("; --strict refuses them" if options.strict else ""))
        print(f"vaekit: {message}; left out", file=sys.stderr)
    long = np.array([t is not None and len(t) > options.max_length for t in token_lists], bool) & ~bad
    if long.any():
        first = int(np.flatnonzero(long)[0])
        where = f"line {lines[first]}" if lines[first] else f"example {first + 1}"
        message = (f"{source}: {int(long.sum())} examples longer than --max-length {options.max_length} tokens "
                   f"(first: {where})")
        print(f"vaekit: {message}; left out", file=sys.stderr)  # as training left them out
    keep = np.flatnonzero(~bad & ~long)
    if len(keep) == 0:
        raise VaekitError(f"{source}: no usable examples")
    return [token_lists[i] for i in keep], keep, {"invalid": int(bad.sum()), "too_long": int(long.sum())}


def load(cfg: DataConfig, kind: str, options, schema: dict | None = None):
    """Train / validation / test token rows and the schema (vocabulary, maximum length)."""
    examples, lines = read_examples(cfg.name, kind, options)
    token_lists, kept, counts = tokenize(examples, lines, kind, options, cfg.name, training=True)
    if cfg.test_data:
        test_examples, test_lines = read_examples(cfg.test_data, kind, options)
        test_tokens, _, _ = tokenize(test_examples, test_lines, kind, options, cfg.test_data, training=True)
        train_i = np.arange(len(token_lists))
    else:
        train_i, test_i = split_indices(len(token_lists), cfg.test_fraction, cfg.split_seed)
        test_tokens = [token_lists[i] for i in test_i]
    val_fraction = cfg.val_fraction if cfg.val_fraction is not None else 0.05
    keep_i, val_i = split_indices(len(train_i), val_fraction, cfg.split_seed + 1)
    train_tokens = [token_lists[train_i[i]] for i in keep_i][: cfg.max_train]
    val_tokens = [token_lists[train_i[i]] for i in val_i]
    if schema is None:
        vocab = tok.fit_vocabulary(train_tokens, options.vocab_size if kind == "text" else None)
        schema = {"kind": kind, "vocab": vocab, "max_length": options.max_length, "num_train": len(train_tokens),
                  "left_out": counts}
    rows = [tok.encode(t, schema["vocab"], schema["max_length"])[0] for t in (train_tokens, val_tokens, test_tokens)]
    return Splits(rows[0], None, rows[1], None, rows[2], None), schema


def rows_of(path: str, kind: str, schema: dict, options, source: str) -> tuple[torch.Tensor, list[str]]:
    """A file of examples as token rows of the run's vocabulary. SMILES with a token the run never
    saw cannot be encoded (one line, naming it); text maps unseen words to <unk>."""
    examples, lines = read_examples(path, kind, options, source)
    return rows_of_strings(examples, kind, schema, options, source, lines)


def rows_of_strings(examples: list[str], kind: str, schema: dict, options, source: str,
                    lines: list[int] | None = None) -> tuple[torch.Tensor, list[str]]:
    """Strings as token rows of the run's vocabulary, with the strings kept (invalid and too long
    ones are left out, and said, as in training)."""
    if not all(isinstance(e, str) for e in examples):
        raise VaekitError(f"{source}: expected a list of strings")
    lines = lines if lines is not None else list(range(1, len(examples) + 1))
    token_lists, kept, _ = tokenize(examples, lines, kind, options, source, training=False)
    rows, unknown = tok.encode(token_lists, schema["vocab"], schema["max_length"])
    if unknown and kind == "smiles":
        vocab = set(schema["vocab"])
        first = unknown[0]
        token = next(t for t in token_lists[first] if t not in vocab)
        raise VaekitError(f"{source}: line {lines[kept[first]]} has the token {token!r}, which the run's training "
                          "molecules never had")
    return rows, [examples[i] for i in kept]

"""Tokenizers fitted on the training split and saved in schema.json: SMILES at the atom level
(a bracket atom, a two-letter element such as Cl or Br, a two-digit ring bond %10, each one
token), and text as lower-cased words and punctuation with a vocabulary cap and <unk>.

Sequences become rows of token ids: the tokens, then <eos>, then <pad> to the maximum length + 1.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import torch

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]

# The SMILES pattern of Schwaller et al. (2019), "Molecular Transformer": bracket atoms, the two-
# letter organic-subset elements, aromatic atoms, bonds, branches, ring-bond digits and %NN.
SMILES_PATTERN = re.compile(
    r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|\*|\$|%[0-9]{2}|[0-9])")
WORD_PATTERN = re.compile(r"[a-z0-9]+(?:['’][a-z]+)?|[^\sa-z0-9]")


def smiles_tokens(text: str) -> list[str] | None:
    """Atom-level tokens of a SMILES string; None when characters are left over (not SMILES)."""
    tokens = SMILES_PATTERN.findall(text)
    return tokens if "".join(tokens) == text else None


def word_tokens(text: str) -> list[str]:
    return WORD_PATTERN.findall(text.lower())


TOKENIZERS = {"smiles": smiles_tokens, "text": word_tokens}
JOINERS = {"smiles": "", "text": " "}


def fit_vocabulary(token_lists: list[list[str]], max_size: int | None) -> list[str]:
    """The specials, then tokens by descending frequency (ties by spelling), at most max_size."""
    counts = Counter(t for tokens in token_lists for t in tokens)
    order = sorted(counts, key=lambda t: (-counts[t], t))
    if max_size:
        order = order[: max(0, max_size - len(SPECIALS))]
    return SPECIALS + order


def encode(token_lists: list[list[str]], vocab: list[str], max_length: int) -> tuple[torch.Tensor, list[int]]:
    """Rows (N, max_length + 1) of ids: tokens, <eos>, <pad>s; unknown tokens are <unk>. Also the
    positions of the rows with an unknown token. Ids are int16 (int32 past 32,767 tokens): MOSES's
    1.6 million molecules take 320 MB, not 1.3 GB; batches are widened as the networks need."""
    index = {t: i for i, t in enumerate(vocab)}
    out = np.zeros((len(token_lists), max_length + 1), np.int16 if len(vocab) < 2**15 else np.int32)
    unknown = []
    for row, tokens in enumerate(token_lists):
        ids = [index.get(t, UNK) for t in tokens]
        if UNK in ids:
            unknown.append(row)
        out[row, : len(ids)] = ids
        out[row, len(ids)] = EOS
    return torch.from_numpy(out), unknown


def decode(rows: torch.Tensor, vocab: list[str], kind: str) -> list[str]:
    """Token rows (N, T) back to strings, stopping at <eos>; specials other than <unk> dropped."""
    joiner = JOINERS[kind]
    out = []
    for ids in rows.tolist():
        tokens = []
        for i in ids:
            if i == EOS:
                break
            if i > EOS:
                tokens.append(vocab[i])
        out.append(joiner.join(tokens))
    return out


def lengths(rows: torch.Tensor) -> torch.Tensor:
    """Tokens of each row including <eos>: (N,)."""
    return (rows != PAD).sum(1)

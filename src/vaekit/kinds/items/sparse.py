"""Users' item sets as compressed sparse rows: a million users by fifty thousand items never
becomes a dense matrix; a batch of rows does, as the training loop and evaluation take them."""

from __future__ import annotations

import numpy as np
import torch


class SparseRows:
    """Rows of a 0/1 matrix (N, num_cols) in CSR form. `index_select(0, idx)` and slicing give
    dense float rows (B, num_cols), so the core's loop, evaluation and embeddings use it as they
    use a tensor of examples."""

    def __init__(self, indptr: torch.Tensor, indices: torch.Tensor, num_cols: int):
        self.indptr, self.indices, self.num_cols = indptr, indices, num_cols  # (N + 1,), (nnz,)

    @classmethod
    def from_lists(cls, rows: list[np.ndarray], num_cols: int) -> "SparseRows":
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        indices = np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64)
        return cls(torch.from_numpy(indptr), torch.from_numpy(indices), num_cols)

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self), self.num_cols)

    @property
    def device(self) -> torch.device:
        return self.indptr.device

    def to(self, device) -> "SparseRows":
        return SparseRows(self.indptr.to(device), self.indices.to(device), self.num_cols)

    def counts(self) -> torch.Tensor:
        return self.indptr[1:] - self.indptr[:-1]  # (N,) items per row

    def index_select(self, dim: int, idx: torch.Tensor) -> torch.Tensor:
        assert dim == 0, "rows only"
        return self.dense(idx)

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, slice):
            return self.dense(torch.arange(len(self), device=self.device)[key])
        return self.dense(torch.as_tensor(key, device=self.device).reshape(-1))

    def entries(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(row within idx, column) of every nonzero of the rows idx: two (nnz_idx,) tensors."""
        starts = self.indptr[idx]
        counts = self.indptr[idx + 1] - starts
        row = torch.repeat_interleave(torch.arange(len(idx), device=self.device), counts)
        first = torch.repeat_interleave(starts - (torch.cumsum(counts, 0) - counts), counts)
        return row, self.indices[first + torch.arange(len(row), device=self.device)]

    def dense(self, idx: torch.Tensor) -> torch.Tensor:
        row, col = self.entries(idx)
        out = torch.zeros(len(idx), self.num_cols, device=self.device)
        out[row, col] = 1.0
        return out  # (B, num_cols)

    def subset(self, idx: torch.Tensor) -> "SparseRows":
        """The rows idx as a new SparseRows."""
        row, col = self.entries(idx)
        counts = self.indptr[idx + 1] - self.indptr[idx]
        return SparseRows(torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)]), col, self.num_cols)

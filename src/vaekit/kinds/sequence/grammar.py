"""The SMILES a sampler may write: a mask over the next token that keeps each sample well-formed
and within its atoms' valences (Weininger, 1988; OpenSMILES), as in syntax-directed decoding
(Dai et al., 2018, "Syntax-Directed Variational Autoencoder for Structured Data").

What it enforces, token by token and vectorised over the batch:
- an atom first (and after '.'); bonds between atoms; ring bonds right after an atom (or its
  ring bonds, or a bond that follows them); no empty branch;
- branches closed before the end, and closed with the rings opened inside them closed (true of
  any depth-first SMILES, RDKit's among them);
- a new ring takes the lowest free number (as RDKit writes them); every ring closed before the
  end, never on the atom that opened it nor on its neighbour;
- bonds within valence: each atom has a capacity (C 4, N 3, O 2, halogens 1, aromatic c 4, ...;
  bracket atoms unchecked) and a bond is allowed only where both ends have room.
Aromaticity (kekulisation) is left to the model. Where the end is not allowed yet, its probability
goes to the tokens that close what is open: a model that means to stop finishes the molecule.
"""

from __future__ import annotations

import torch

from .tokens import EOS

START, ATOM, BOND, OPEN, CLOSE, RING, DOT, OTHER = range(8)
FOLLOWERS = {START: {ATOM}, ATOM: {ATOM, BOND, OPEN, CLOSE, RING, DOT}, RING: {ATOM, BOND, OPEN, CLOSE, RING, DOT},
             BOND: {ATOM, RING}, OPEN: {ATOM, BOND}, CLOSE: {ATOM, BOND, OPEN, CLOSE, DOT}, DOT: {ATOM}}
ENDS = {ATOM, RING, CLOSE}  # what a string may end on
# Bonds an uncharged organic-subset atom may make (RDKit's largest allowed valence); aromatic
# bonds count one each, so an aromatic carbon has room for two ring bonds and a double bond.
CAPACITY = {"B": 3, "C": 4, "N": 3, "O": 2, "S": 6, "P": 5, "F": 1, "Cl": 1, "Br": 1, "I": 1,
            "b": 3, "c": 4, "n": 3, "o": 2, "s": 4, "p": 3}
BOND_ORDER = {"-": 1, "=": 2, "#": 3, "$": 4, ":": 1, "/": 1, "\\": 1}
UNCHECKED = 8  # bracket atoms and '*': their charge and hydrogens are theirs to say
MAX_DEPTH = 32


def category(token: str) -> int:
    if token in CAPACITY or token == "*" or token.startswith("["):
        return ATOM
    if token in BOND_ORDER:
        return BOND
    if token.isdigit() or (token.startswith("%") and token[1:].isdigit()):
        return RING
    return {"(": OPEN, ")": CLOSE, ".": DOT}.get(token, OTHER)


class SmilesGrammar:
    """start(n) -> state; constrain(state, probs) -> allowed probabilities; advance(state, tokens).
    State per row (tensors): the last token's category, the branch depth, the pending bond's
    order, the depth of the atom the next bond attaches to (the anchor), per depth the id of its
    current atom, per atom its capacity and the bonds it has, and per ring number the depth, atom
    and bond order it was opened with and whether the current atom has used it."""

    def __init__(self, vocab: list[str]):
        cats = [category(t) for t in vocab]  # the specials are OTHER: the table never allows them
        self.category = torch.tensor(cats)  # (V,)
        self.capacity = torch.tensor([CAPACITY.get(t, UNCHECKED) for t in vocab])  # (V,)
        self.order = torch.tensor([BOND_ORDER.get(t, 1) for t in vocab])  # (V,)
        # ring tokens by their number, so "the lowest free one" is the first free column
        rings = sorted((i for i, c in enumerate(cats) if c == RING), key=lambda i: int(vocab[i].lstrip("%")))
        self.rings = torch.tensor(rings, dtype=torch.long)  # (R,)
        self.ring_of = torch.full((len(vocab),), -1, dtype=torch.long)
        self.ring_of[self.rings] = torch.arange(len(rings))
        self.is_atom, self.is_bond = self.category == ATOM, self.category == BOND
        self.is_close, self.is_open = self.category == CLOSE, self.category == OPEN
        self.table = torch.zeros(DOT + 1, len(vocab), dtype=torch.bool)  # (previous category, V)
        for prev, follow in FOLLOWERS.items():
            self.table[prev] = torch.tensor([c in follow for c in cats])
            self.table[prev, EOS] = prev in ENDS

    def start(self, n: int, device, max_atoms: int = 128) -> dict:
        for name, value in vars(self).items():
            setattr(self, name, value.to(device))
        r, d = len(self.rings), MAX_DEPTH
        ints, flags = dict(dtype=torch.long, device=device), dict(dtype=torch.bool, device=device)
        return {"prev": torch.full((n,), START, **ints), "depth": torch.zeros(n, **ints),
                "pending": torch.ones(n, **ints), "anchor": torch.full((n,), -1, **ints),
                "atom": torch.zeros(n, d, **ints), "parent": torch.full((n,), -1, **ints),
                "capacity": torch.zeros(n, max_atoms + 1, **ints), "used": torch.zeros(n, max_atoms + 1, **ints),
                "atoms": torch.zeros(n, **ints),  # atom ids count from 1; 0 is "none"
                "ring_depth": torch.full((n, r), -1, **ints), "ring_atom": torch.zeros(n, r, **ints),
                "ring_order": torch.ones(n, r, **ints), "here": torch.zeros(n, r, **flags),
                "ring_ok": torch.zeros(n, **flags)}

    def current(self, state: dict) -> torch.Tensor:
        """(N,) the id of the atom the next bond attaches to (0 where none)."""
        atom = state["atom"].gather(1, state["anchor"].clamp(min=0)[:, None])[:, 0]
        return torch.where(state["anchor"] >= 0, atom, 0)

    def room_of(self, state: dict, atom: torch.Tensor) -> torch.Tensor:
        """Bonds the atoms (N, ...) can still make: plenty for "none" (id 0)."""
        flat = atom.reshape(len(atom), -1)
        left = state["capacity"].gather(1, flat) - state["used"].gather(1, flat)
        return torch.where(flat > 0, left, UNCHECKED).view(atom.shape)

    def allowed(self, state: dict) -> torch.Tensor:
        """(N, V) bool: the tokens that keep each row well-formed; <eos> alone where none would.
        No token may leave the current atom with no room while a ring opened in this branch (or,
        outside branches, any ring) is still open: nothing could close it."""
        ok = self.table[state["prev"].clamp(max=DOT)].clone()
        depth, pending = state["depth"], state["pending"]
        room = self.room_of(state, self.current(state))  # (N,)
        is_open = state["ring_depth"] >= 0  # (N, R)
        inner = state["ring_depth"] >= depth[:, None]  # (N, R) opened inside this branch, still open
        num_inner = inner.sum(1)  # (N,)
        ok &= ~self.is_close | ((depth > 0) & (num_inner == 0))[:, None]
        ok &= ~self.is_open | ((room >= 2) & (depth < MAX_DEPTH - 1))[:, None]  # the branch, then the chain
        # a branch's first bond leaves its branch point room to go on after it
        ok &= ~self.is_bond | (self.order[None, :] <= (room - (state["prev"] == OPEN).long())[:, None])
        need = torch.where(state["anchor"] >= 0, pending, 0)[:, None]  # (N, 1)
        fits = (self.capacity[None, :] >= need) & (room[:, None] >= need)
        ok &= ~self.is_atom | (fits & ((self.capacity[None, :] > need) | (num_inner == 0)[:, None]))
        ok[:, EOS] &= (depth == 0) & ~is_open.any(1)
        ok[:, self.rings] &= self.ring_bonds(state, room, is_open, inner, num_inner)
        ok[:, EOS] |= ~ok.any(1)
        return ok

    def ring_bonds(self, state, room, is_open, inner, num_inner) -> torch.Tensor:
        """(N, R) bool: which ring numbers may come next. A new ring takes the lowest number not
        open and not used on this atom; an open one closes unless the opener is this atom, its
        neighbour, or the opener of a ring this atom closed. The bond's order is said where the
        ring opens or where it closes (the same, if both); both ends need room for it."""
        if not len(self.rings):  # a vocabulary without ring bonds
            return is_open
        pending = state["pending"][:, None]
        free = ~is_open & ~state["here"]
        lowest_free = torch.nn.functional.one_hot(free.int().argmax(1), len(self.rings)).bool() & free
        opener = state["ring_atom"]  # (N, R)
        agrees = (pending == 1) | (state["ring_order"] == 1) | (pending == state["ring_order"])
        closable = is_open & ~state["here"] & (opener != state["parent"][:, None]) & agrees
        order = torch.where(is_open, torch.maximum(state["ring_order"], pending), pending)
        extra = torch.where(is_open, order - state["ring_order"], 0)  # what the opener did not have yet
        closable &= self.room_of(state, opener) >= extra
        left = room[:, None] - order  # this atom's room after the bond
        inner_after = num_inner[:, None] - (inner & closable).long() + lowest_free.long()
        return (closable | lowest_free) & (left >= 0) & ((left > 0) | (inner_after == 0)) & state["ring_ok"][:, None]

    def constrain(self, state: dict, probs: torch.Tensor) -> torch.Tensor:
        """Next-token probabilities (N, V) kept to the allowed tokens, unnormalised; the end's
        probability, where it is not allowed yet, shared among the allowed closing tokens."""
        ok = self.allowed(state)
        closers = ok & self.is_close
        closers[:, self.rings] |= ok[:, self.rings] & (state["ring_depth"] >= 0)
        moved = probs[:, EOS] * ~ok[:, EOS]  # (N,)
        probs = probs * ok + closers * (moved / closers.sum(1).clamp(min=1))[:, None]
        probs[:, EOS] += (probs.sum(1) == 0).float()  # nothing left (underflow): end
        return probs

    def advance(self, state: dict, token: torch.Tensor) -> None:
        """Account for the chosen tokens (N,)."""
        cat, rows = self.category[token], torch.arange(len(token), device=token.device)
        anchor, depth, pending, this = state["anchor"], state["depth"], state["pending"], self.current(state)
        used = state["used"]
        # an atom: the bond to the anchor uses room at both ends; it becomes its depth's atom
        atom = cat == ATOM
        new = (state["atoms"] + 1).clamp(max=used.shape[1] - 1)
        bond = torch.where(atom & (anchor >= 0), pending, 0)
        used[rows, this] += bond  # id 0 ("none") soaks up what has no anchor
        a = rows[atom]
        used[a, new[atom]] = bond[atom]
        state["capacity"][a, new[atom]] = self.capacity[token[atom]]
        state["atom"][a, depth[atom]] = new[atom]
        state["parent"] = torch.where(atom, this, state["parent"])
        state["atoms"] = torch.where(atom, new, state["atoms"])
        # a ring bond: opens (at the lowest free number) or closes, with room at both ends
        r = self.ring_of[token]
        rr, cr = rows[r >= 0], r[r >= 0]
        opening = state["ring_depth"][rr, cr] < 0
        ring_order, opener = state["ring_order"][rr, cr], state["ring_atom"][rr, cr]
        order = torch.maximum(pending[rr], ring_order)
        used[rr, this[rr]] += order
        used[rr, torch.where(opening, 0, opener)] += torch.where(opening, 0, order - ring_order)
        state["here"] &= ~atom[:, None]
        state["here"][rr] |= (state["ring_atom"][rr] == opener[:, None]) & ~opening[:, None] & (opener[:, None] > 0)
        state["here"][rr, cr] = True
        state["ring_depth"][rr, cr] = torch.where(opening, depth[rr], -1)
        state["ring_order"][rr, cr] = torch.where(opening, pending[rr], 1)
        state["ring_atom"][rr, cr] = torch.where(opening, this[rr], 0)
        # the rest: branches move the depth, bonds set the next bond's order
        state["anchor"] = torch.where(atom, depth, torch.where(cat == DOT, -1, anchor))
        state["depth"] = (depth + (cat == OPEN).long() - (cat == CLOSE).long()).clamp(0, MAX_DEPTH - 1)
        state["anchor"] = torch.where(cat == CLOSE, state["depth"], state["anchor"])
        state["pending"] = torch.where(cat == BOND, self.order[token], 1)
        state["ring_ok"] = (cat == ATOM) | (cat == RING) | ((cat == BOND) & state["ring_ok"])  # digits follow atoms
        state["prev"] = cat

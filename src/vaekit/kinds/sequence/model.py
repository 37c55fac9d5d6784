"""The sequence VAE (Bowman et al., 2016; Gómez-Bombarelli et al., 2018): a bidirectional GRU reads
the tokens into q(z|x); an autoregressive GRU, with z fed at every step and setting its first
state, gives p(x|z) = prod_t Cat(x_t | x_<t, z), trained with teacher forcing.

The autoregressive GRU lives in the likelihood: decode(z) returns a distribution whose log_prob(x)
runs the GRU over x (teacher forcing), whose sample() generates, and whose mean is the greedy
decoding, so the core's ELBO, IWAE bound and NLL estimate apply unchanged. Word dropout (Bowman et
al., sec. 3.3) replaces decoder inputs with <unk> while training, so the decoder leans on z.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution
from torch.nn.utils.rnn import pack_padded_sequence

from ...nets import with_condition
from .tokens import BOS, EOS, PAD, UNK


def trimmed(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows cut to the longest sequence of the batch (with its <eos>), as int64, and the lengths."""
    lengths = (x != PAD).sum(-1)
    return x[..., : int(lengths.max())].long(), lengths


class SeqEncoder(nn.Module):
    """Token rows (B, T) -> embedding -> (bi)GRU -> last states -> (B, out_dim)."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden: int, out_dim: int, layers: int = 1,
                 bidirectional: bool = True, cond_dim: int = 0):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.rnn = nn.GRU(embed_dim, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional)
        self.directions = 2 if bidirectional else 1
        self.out = nn.Linear(hidden * self.directions + cond_dim, out_dim)

    def forward(self, x, c=None):
        x, lengths = trimmed(x)
        packed = pack_padded_sequence(self.embed(x), lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h = self.rnn(packed)  # (layers * directions, B, H)
        h = h[-self.directions :].transpose(0, 1).reshape(len(x), -1)  # the last layer's final states
        return self.out(with_condition(h, c))  # (B, out_dim)


class SeqDecoder(nn.Module):
    """z (and the condition) as they are: the autoregressive likelihood conditions on them."""

    def forward(self, z, c=None):
        return with_condition(z, c)


class AutoregressiveLikelihood(nn.Module):
    """The decoder GRU: embedding of the previous token, concatenated with z, at every step;
    z also sets the initial state; a linear layer gives the next token's logits."""

    needs_unit_range = False
    num_params = 1

    def __init__(self, vocab_size: int, z_dim: int, embed_dim: int, hidden: int, layers: int, word_dropout: float,
                 emits_unk: bool = True, grammar=None):
        super().__init__()
        self.grammar = grammar  # SMILES: the mask generation keeps to (grammar.SmilesGrammar)
        # never generated: <pad>, <bos>, and <unk> where the data has none (SMILES; word dropout
        # only puts it among the inputs)
        self.banned = [PAD, BOS] + ([] if emits_unk else [UNK])
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.init = nn.Linear(z_dim, layers * hidden)
        self.rnn = nn.GRU(embed_dim + z_dim, hidden, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden, vocab_size)
        self.layers, self.hidden, self.word_dropout = layers, hidden, word_dropout

    def forward(self, cond):  # cond: (..., z_dim)
        return TokenSequence(cond, self)

    def initial_state(self, cond: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.init(cond)).view(len(cond), self.layers, self.hidden).transpose(0, 1).contiguous()

    def run(self, cond: torch.Tensor, inputs: torch.Tensor, state: torch.Tensor | None = None):
        """Logits (N, T, V) for input tokens (N, T) given cond (N, z_dim), and the last state."""
        emb = self.embed(inputs)
        z = cond[:, None, :].expand(-1, inputs.shape[1], -1).to(emb.dtype)
        out, state = self.rnn(torch.cat([emb, z], dim=-1), self.initial_state(cond) if state is None else state)
        return self.out(out), state


class TokenSequence(Distribution):
    """p(x|z) over token rows; batch shape cond.shape[:-1], event shape (T,)."""

    arg_constraints = {}

    def __init__(self, cond: torch.Tensor, net: AutoregressiveLikelihood, temperature: float = 1.0):
        self.cond, self.net, self.temperature = cond, net, temperature
        super().__init__(batch_shape=cond.shape[:-1], validate_args=False)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """sum_t log p(x_t | x_<t, z) up to and including <eos>: (...,) nats."""
        lead = self.cond.shape[:-1]
        cond = self.cond.reshape(-1, self.cond.shape[-1])  # (N, z_dim)
        x, lengths = trimmed(x.expand(*lead, x.shape[-1]).reshape(len(cond), -1))  # (N, T)
        inputs = torch.cat([x.new_full((len(x), 1), BOS), x[:, :-1]], dim=1)
        if self.net.training and self.net.word_dropout > 0:
            drop = (torch.rand(inputs.shape, device=x.device) < self.net.word_dropout) & (inputs > EOS)
            inputs = inputs.masked_fill(drop, UNK)
        logits, _ = self.net.run(cond, inputs)
        logp = F.log_softmax(logits.float(), dim=-1).gather(-1, x.unsqueeze(-1)).squeeze(-1)  # (N, T)
        mask = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
        return (logp * mask).sum(-1).view(lead)

    @torch.no_grad()
    def generate(self, max_length: int, greedy: bool, generator: torch.Generator | None = None,
                 constrained: bool = True) -> torch.Tensor:
        """Token rows (N, max_length + 1), each ending at its <eos> (or cut at max_length). With the
        net's grammar (unless not `constrained`), each step draws from p(x_t | x_<t, z) kept to it
        (SmilesGrammar.constrain)."""
        cond = self.cond.reshape(-1, self.cond.shape[-1])
        n = len(cond)
        grammar = self.net.grammar if constrained else None
        syntax = grammar.start(n, cond.device, max_length + 1) if grammar else None
        out = torch.full((n, max_length + 1), PAD, dtype=torch.long, device=cond.device)
        token = torch.full((n, 1), BOS, dtype=torch.long, device=cond.device)
        done = torch.zeros(n, dtype=torch.bool, device=cond.device)
        rows, state = torch.arange(n, device=cond.device), None  # the rows of `out` still running
        for t in range(max_length + 1):
            logits, state = self.net.run(cond, token, state)
            logits = logits[:, -1].float()
            logits[:, self.net.banned] = float("-inf")
            probs = torch.softmax(logits / max(self.temperature, 1e-6), dim=-1)  # (B, V)
            if grammar:
                probs = grammar.constrain(syntax, probs)
            if greedy:
                token = probs.argmax(-1, keepdim=True)
            else:
                token = torch.multinomial(probs, 1, generator=generator)
            if t == max_length:
                token = torch.full_like(token, EOS)
            if grammar:
                grammar.advance(syntax, token[:, 0])
            out[rows, t] = torch.where(done, PAD, token[:, 0])
            done |= token[:, 0] == EOS
            if done.all():
                break
            if 2 * done.sum() > len(done):  # most have ended: run on without them
                keep = ~done
                rows, cond, token, state, done = rows[keep], cond[keep], token[keep], state[:, keep], done[keep]
                syntax = {k: v[keep] for k, v in syntax.items()} if grammar else None
        return out

    def sample(self, sample_shape=torch.Size(), generator: torch.Generator | None = None, max_length: int = 100):
        return self.generate(max_length, greedy=False, generator=generator)

    @property
    def mean(self) -> torch.Tensor:
        """The greedy decoding (the most likely token at each step), up to 100 tokens."""
        return self.generate(100, greedy=True)


class PaddedEncoder(nn.Module):
    """The encoder without packed sequences (which ONNX cannot express): each direction of the
    one-layer bidirectional GRU as a GRU of its own, the backward one over each row reversed within
    its length, the states read at the last token. Equal to SeqEncoder on any padded rows."""

    def __init__(self, encoder: SeqEncoder):
        super().__init__()
        rnn = encoder.rnn
        if rnn.num_layers != 1 or encoder.directions != 2:
            raise ValueError("only a one-layer bidirectional encoder is written out this way")
        self.embed, self.out = encoder.embed, encoder.out
        self.forward_rnn, self.backward_rnn = (nn.GRU(rnn.input_size, rnn.hidden_size, batch_first=True) for _ in "fb")
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(self.forward_rnn, name).data.copy_(getattr(rnn, name))
            getattr(self.backward_rnn, name).data.copy_(getattr(rnn, name + "_reverse"))

    def forward(self, x):  # x: (B, T) token ids, PAD after each row's <eos>
        lengths = (x != PAD).sum(-1)
        last = (lengths - 1).clamp(min=0)  # (B,)
        emb = self.embed(x)  # (B, T, E)
        rows = torch.arange(len(x))
        ahead, _ = self.forward_rnn(emb)
        steps = torch.arange(x.shape[1])[None, :]
        reverse = (lengths[:, None] - 1 - steps).clamp(min=0)  # (B, T): row reversed within its length
        back, _ = self.backward_rnn(emb.gather(1, reverse[..., None].expand(-1, -1, emb.shape[-1])))
        h = torch.cat([ahead[rows, last], back[rows, last]], dim=-1)
        mu, logvar = self.out(h).chunk(2, dim=-1)
        return mu, logvar


class TeacherForced(nn.Module):
    """z (B, D) and token rows (B, T) -> the next-token logits (B, T, V) at each position, the
    decoder GRU reading <bos> and the row's tokens before it: p(x|z)'s parameters."""

    def __init__(self, likelihood: AutoregressiveLikelihood):
        super().__init__()
        self.net = likelihood

    def forward(self, z, x):
        inputs = torch.cat([torch.full_like(x[:, :1], BOS), x[:, :-1]], dim=1)
        logits, _ = self.net.run(z, inputs)
        return logits

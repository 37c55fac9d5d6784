"""The sequence kinds: SMILES (MOSES molecules) and text (Jane Austen), tokenizers, the
autoregressive likelihood, and the commands."""

import gzip
import json
import math
import sys

import pandas as pd
import pytest
import torch

from vaekit.checkpoint import open_run, read_metrics
from vaekit.config import DataConfig
from vaekit.cli import main
from vaekit.kinds.sequence import tokens as tok
from vaekit.kinds.sequence.data import sentences
from vaekit.kinds.sequence.model import AutoregressiveLikelihood

from conftest import SHARED_DATA, one_line_error, shared, vaekit_cli

SMALL = ["--hidden", "64,128", "--latent-dim", "8", "--batch-size", "64", "--precision", "fp32", "--quiet"]


@pytest.fixture(scope="module")
def molecules(tmp_path_factory):
    path = shared("moses/train.csv.gz", "MOSES")
    with gzip.open(path, "rt") as f:
        lines = [next(f) for _ in range(3001)]
    out = tmp_path_factory.mktemp("mols") / "mols.csv"
    out.write_text("".join(lines))
    return out


@pytest.fixture(scope="module")
def smiles_run(molecules, tmp_path_factory):
    out = tmp_path_factory.mktemp("smiles") / "run"
    assert main(["train", "--data", str(molecules), "--kind", "smiles", *SMALL, "--epochs", "6", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    return shared("austen/persuasion.txt.gz", "Austen's novels")


def test_long_smiles_budgets_train_a_deeper_decoder_at_a_lower_rate():
    from vaekit.cli import build_parser, config_flags, new_config

    def config(*flags):
        args = build_parser().parse_args(["train", "--data", "m.csv", "--kind", "smiles", "--out", "r", *flags])
        return new_config(None, config_flags(args))

    short, long = config("--max-minutes", "10"), config("--max-minutes", "120")
    assert (short.train.lr, short.model.hidden) == (4e-3, [256, 512])
    assert (long.train.lr, long.model.hidden) == (1e-3, [256, 512, 512])
    assert long.train.loss_guard == short.train.loss_guard == 0.05  # the rest of the defaults stay
    mine = config("--max-minutes", "120", "--lr", "5e-4", "--hidden", "256,512")
    assert (mine.train.lr, mine.model.hidden) == (5e-4, [256, 512])  # flags win
    assert config().train.lr == 4e-3  # no budget: the epoch defaults


def test_smiles_tokens_are_atoms():
    assert tok.smiles_tokens("CC(Cl)c1cc[nH]c1Br") == ["C", "C", "(", "Cl", ")", "c", "1", "c", "c", "[nH]", "c", "1", "Br"]
    assert tok.smiles_tokens("C%10CC%10") == ["C", "%10", "C", "C", "%10"]
    assert tok.smiles_tokens("C€C") is None


def test_rows_round_trip_with_eos_and_padding():
    vocab = tok.fit_vocabulary([["C", "O"], ["C", "C", "N"]], None)
    rows, unknown = tok.encode([["C", "O"], ["N", "X"]], vocab, max_length=4)
    assert rows.shape == (2, 5) and rows[0, 2] == tok.EOS and rows[0, 3] == tok.PAD and unknown == [1]
    assert tok.decode(rows, vocab, "smiles") == ["CO", "N<unk>"]
    assert tok.lengths(rows).tolist() == [3, 3]


def test_sentences_split_running_text():
    text = "It was late. Mr. Elliot said \"Yes!\" Then she left.\n\nA new paragraph\nruns on.\n"
    assert sentences(text) == ['It was late.', 'Mr. Elliot said "Yes!"', 'Then she left.', 'A new paragraph runs on.']


def test_sequence_likelihood_is_a_normalised_autoregressive_model():
    torch.manual_seed(0)
    net = AutoregressiveLikelihood(vocab_size=6, z_dim=3, embed_dim=4, hidden=8, layers=2, word_dropout=0.0).eval()
    z = torch.randn(2, 3)
    # Every sequence of up to 2 tokens from {4, 5}, then <eos>; plus the mass of longer ones:
    # the probabilities of all sequences ending within 3 steps plus those still running sum to 1.
    seqs = [[tok.EOS]] + [[a, tok.EOS] for a in (4, 5)] + [[a, b, tok.EOS] for a in (4, 5) for b in (4, 5)]
    total = torch.zeros(2)
    for s in seqs:
        x = torch.tensor([s + [tok.PAD] * (3 - len(s))])
        total += net(z).log_prob(x.expand(2, -1)).exp()
    assert torch.all(total < 1) and torch.all(total > 0)
    x = torch.tensor([[4, 5, tok.EOS, tok.PAD]])
    logp = net(z).log_prob(x)
    manual = torch.zeros(2)
    state, token = None, torch.full((2, 1), tok.BOS)
    for t, target in enumerate([4, 5, tok.EOS]):
        logits, state = net.run(z, token, state)
        manual += torch.log_softmax(logits[:, -1], -1)[:, target]
        token = torch.full((2, 1), target)
    torch.testing.assert_close(logp, manual, atol=1e-5, rtol=1e-5)
    # Importance weights over K samples flatten and restore the leading shape.
    assert net(z.expand(5, 2, 3)).log_prob(x.expand(2, -1)).shape == (5, 2)


WELL_FORMED = ["CCO", "c1ccccc1", "O=C(NC1CCc2ccccc2C1)c1ccncc1", "CC(C)(C)OC(=O)N1CCC2(CC1)OCCO2",
               "O=C1Nc2ccccc2C12OCC(COc1ccc(Cl)cc1)O2", "C#N", "C=C1C(CO)C(O)CC1n1cnc2c(=O)[nH]c(N)nc21",
               "CC(C)(C)C1(O)CC2OC(=O)CC23C(=O)OC2OC(=O)C(O)C231", "FC(F)(F)c1ccc(Br)cc1", "C[N+](C)(C)C.[Cl-]"]
# Each is cut or broken where the grammar must refuse the next token: (prefix, refused token).
MALFORMED = [("C1CC", "<eos>"), ("C(C", "<eos>"), ("CC", ")"), ("C(", ")"), ("", "("), ("", "1"), ("C=", "<eos>"),
             ("C1", "1"), ("C1C", "1"), ("CF", "C"), ("FC(F)(F)F", "F"), ("O=C=O", "="), ("C(C1CC", ")"),
             ("C(=O)", "#"), ("C1CCC", "3"), ("C(C)", "1"), ("O=", "Cl"), ("C(C1CC", "F")]


def grammar_of(strings):
    from vaekit.kinds.sequence.grammar import SmilesGrammar

    vocab = tok.fit_vocabulary([tok.smiles_tokens(s) for s in strings] + [list("CFON()=#123") + ["Cl"]], None)
    return SmilesGrammar(vocab), {t: i for i, t in enumerate(vocab)}


def refused(strings, grammar, index):
    """Per string, the first of its tokens (then <eos>) the grammar refuses, or None."""
    out = []
    for s in strings:
        state, first = grammar.start(1, "cpu"), None
        for t in tok.smiles_tokens(s) + ["<eos>"]:
            if first is None and not grammar.allowed(state)[0, index[t]]:
                first = t
            grammar.advance(state, torch.tensor([index[t]]))
        out.append(first)
    return out


def test_smiles_grammar_allows_real_molecules_and_refuses_malformed_ones():
    grammar, index = grammar_of(WELL_FORMED)
    assert refused(WELL_FORMED, grammar, index) == [None] * len(WELL_FORMED)
    for prefix, token in MALFORMED:
        assert refused([prefix + ("" if token == "<eos>" else token)], grammar, index)[0] == token, (prefix, token)
    from vaekit.kinds.sequence.grammar import SmilesGrammar

    no_rings = SmilesGrammar(tok.SPECIALS + ["C", "O", "("])
    assert no_rings.allowed(no_rings.start(1, "cpu")).tolist() == [[False] * 4 + [True, True, False]]  # an atom first, rings or not
    path = SHARED_DATA / "moses" / "test.csv.gz"
    if path.is_file():  # and every one of 5,000 MOSES test molecules, in one batch
        smiles = pd.read_csv(path, nrows=5000)["SMILES"].tolist()
        grammar, index = grammar_of(smiles)
        rows, _ = tok.encode([tok.smiles_tokens(s) for s in smiles], sorted(index, key=index.get), 100)
        rows = rows.long()
        state, live = grammar.start(len(rows), "cpu"), torch.ones(len(rows), dtype=torch.bool)
        for t in range(int(tok.lengths(rows).max())):
            assert grammar.allowed(state)[live, rows[live, t]].all()
            grammar.advance(state, rows[:, t])
            live &= rows[:, t] != tok.EOS


def test_constrained_sampling_writes_valid_molecules_from_an_untrained_decoder():
    """Without aromatic atoms, kekulisation cannot fail: every sample the grammar keeps to that
    ends within the length cap must be a valid molecule, even from random weights."""
    Chem = pytest.importorskip("rdkit.Chem")
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    grammar, index = grammar_of(["CCO"])
    vocab = sorted(index, key=index.get)
    torch.manual_seed(0)
    net = AutoregressiveLikelihood(len(vocab), 4, 8, 16, 1, 0.0, emits_unk=False, grammar=grammar).eval()
    z = torch.randn(400, 4)

    def valid_fraction(constrained):
        rows = net(z).generate(80, greedy=False, generator=torch.Generator().manual_seed(1), constrained=constrained)
        ended = tok.lengths(rows) <= 80  # <eos> by choice, not at the cap
        strings = [s for s, e in zip(tok.decode(rows, vocab, "smiles"), ended) if e]
        return len(strings) / len(rows), sum(Chem.MolFromSmiles(s) is not None for s in strings) / len(strings)

    ended, valid = valid_fraction(True)
    assert ended > 0.9 and valid == 1.0
    assert valid_fraction(False)[1] < 0.5  # the same decoder, free


def test_smiles_training_lowers_the_loss_and_samples_strings(smiles_run, tmp_path):
    records = read_metrics(smiles_run)
    assert records[-1]["val_neg_elbo"] < records[0]["val_neg_elbo"] - 5
    schema = json.loads((smiles_run / "schema.json").read_text())
    assert "Cl" in schema["vocab"] and schema["max_length"] == 100
    out = tmp_path / "mols.csv"
    assert main(["sample", str(smiles_run), "--num", "200", "--out", str(out)]) == 0
    frame = pd.read_csv(out, keep_default_na=False)
    assert list(frame.columns) == ["SMILES"] and len(frame) == 200
    assert frame["SMILES"].str.len().between(1, 120).mean() > 0.9
    assert set("".join(frame["SMILES"])) <= set("".join(schema["vocab"][4:]))
    cold = tmp_path / "cold.csv"  # near-greedy sampling: the same few strings over and over
    assert main(["sample", str(smiles_run), "--num", "200", "--temperature", "0.05", "--out", str(cold)]) == 0
    assert pd.read_csv(cold, keep_default_na=False)["SMILES"].nunique() < frame["SMILES"].nunique() / 2
    free = tmp_path / "free.csv"
    assert main(["sample", str(smiles_run), "--num", "200", "--unconstrained", "--out", str(free)]) == 0
    if _has_rdkit():  # a weak model writes many malformed strings; the grammar keeps those out
        from rdkit import Chem, RDLogger

        RDLogger.DisableLog("rdApp.*")
        valid = [sum(Chem.MolFromSmiles(m) is not None for m in pd.read_csv(f, keep_default_na=False)["SMILES"])
                 for f in (out, free)]
        assert valid[0] > valid[1] + 20, valid
    bad = vaekit_cli("sample", smiles_run, "--temperature", "0", "--out", tmp_path / "z.csv")
    assert bad.returncode == 2 and "--temperature: expected a positive number" in bad.stderr


def test_evaluate_reports_sequence_figures(smiles_run, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(smiles_run), "--json", "--iw-samples", "10", "--quiet"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["nll"] <= r["neg_elbo"] + 0.5 and r["kl"] > 0 and r["active_units"] >= 1
    assert r["perplexity"] == pytest.approx(math.exp(r["nll"] / r["tokens_per_example"]))
    assert 0 < r["reconstruction_token_accuracy"] <= 1 and 0 <= r["reconstruction_accuracy"] <= 1


def test_reconstruct_interpolate_encode(smiles_run, tmp_path):
    assert main(["reconstruct", str(smiles_run), "--num", "5", "--out", str(tmp_path / "r.csv")]) == 0
    assert list(pd.read_csv(tmp_path / "r.csv").columns) == ["input", "reconstruction"]
    assert main(["interpolate", str(smiles_run), "--pairs", "2", "--steps", "5", "--out", str(tmp_path / "i.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "i.csv")) == 10
    assert main(["encode", str(smiles_run), "--out", str(tmp_path / "e.csv")]) == 0
    emb = pd.read_csv(tmp_path / "e.csv")
    assert emb.columns[0] == "id" and emb.shape[1] == 1 + 8


def test_bad_sequences(molecules, smiles_run, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("SMILES\nCCO\nC1CC\nCCN\n" + "C" * 150 + "\n" + "".join(f"C{'C' * (i % 5)}O\n" for i in range(40)))
    result = vaekit_cli("train", "--data", bad, "--kind", "smiles", *SMALL, "--epochs", "1", "--out", tmp_path / "r")
    assert result.returncode == 0, result.stderr
    if "rdkit" in sys.modules or _has_rdkit():
        assert "1 invalid SMILES (first: line 3, 'C1CC')" in result.stderr
    assert "1 examples longer than --max-length 100 tokens (first: line 5)" in result.stderr
    if _has_rdkit():
        one_line_error(vaekit_cli("train", "--data", bad, "--kind", "smiles", "--strict", "--out", tmp_path / "s"),
                       "invalid SMILES", "--strict")
    (tmp_path / "new.csv").write_text("SMILES\nCC[Se]C\n")
    one_line_error(vaekit_cli("encode", smiles_run, "--data", tmp_path / "new.csv", "--out", tmp_path / "e.csv"),
                   "[Se]", "never had")
    (tmp_path / "latin.txt").write_bytes(b"une phrase\ncaf\xe9\n")
    one_line_error(vaekit_cli("train", "--data", tmp_path / "latin.txt", "--kind", "text", "--out", tmp_path / "t"),
                   "not UTF-8", "line 2")
    assert not (tmp_path / "e.csv").exists() and not (tmp_path / "t" / "model.safetensors").exists()


def _has_rdkit():
    try:
        import rdkit  # noqa: F401
    except ImportError:
        return False
    return True


def test_text_sentences_train_and_generate(book, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--data", str(book), "--kind", "text", "--split", "sentences", "--max-train", "2000",
                 *SMALL, "--epochs", "3", "--out", str(out)]) == 0
    records = read_metrics(out)
    assert records[-1]["val_neg_elbo"] < records[0]["val_neg_elbo"]
    schema = json.loads((out / "schema.json").read_text())
    assert schema["vocab"][:4] == tok.SPECIALS and "anne" in schema["vocab"]
    assert main(["sample", str(out), "--num", "5", "--out", str(tmp_path / "s.csv")]) == 0
    assert list(pd.read_csv(tmp_path / "s.csv").columns) == ["text"]
    run = open_run(out)
    assert run.kind.name == "text"


def test_moses_metrics_on_real_molecules(molecules, tmp_path):
    pytest.importorskip("rdkit")
    from vaekit.kinds.sequence import chem

    smiles = pd.read_csv(molecules)["SMILES"].tolist()[:300]
    fps = chem.fingerprints(chem.molecules(smiles))
    same = chem.tanimoto_max(fps[:50], fps)
    assert torch.allclose(same, torch.ones(50))  # each molecule's nearest neighbour is itself
    assert 0.7 < chem.internal_diversity(fps, 1) < 0.95  # MOSES reports ~0.86 for its sets
    frags = chem.fragments(chem.molecules(smiles))
    assert chem.cosine(frags, frags) == pytest.approx(1.0)
    patterns = chem.alert_patterns(None)
    passing = sum(chem.passes_filters(m, patterns) for m in chem.molecules(smiles)) / len(smiles)
    assert passing > 0.9  # MOSES's training molecules were chosen to pass its filters
    assert not chem.passes_filters(chem.molecules(["C[N+](C)(C)C"])[0], patterns)  # a charge
    assert 0 < chem.property_of("qed")(chem.molecules(["CCO"])[0]) < 1


def test_reference_statistics_skip_unparsable_test_molecules(molecules, tmp_path):
    pytest.importorskip("fcd_torch")
    from vaekit.kinds.sequence import chem

    smiles = pd.read_csv(molecules)["SMILES"].tolist()[:40]
    ref = tmp_path / "ref"
    ref.mkdir()
    pd.DataFrame({"SMILES": smiles[:5] + ["C1CC"] + smiles[5:]}).to_csv(ref / "test.csv.gz", index=False)
    stats = chem.reference_stats(ref, tmp_path / "cache")
    mu, _ = chem.chemnet_stats(smiles)  # the 40 that parse, each with its own activations
    assert len(stats["fps"]) == 40 and stats["fcd_mu"] == pytest.approx(mu, abs=1e-5)
    assert chem.reference_stats(ref, tmp_path / "cache")["fcd_mu"] == pytest.approx(mu, abs=1e-5)  # cached


@pytest.mark.parametrize("method", ["es", "gradient"])
def test_optimize_finds_novel_valid_molecules(smiles_run, molecules, tmp_path, method):
    pytest.importorskip("rdkit")
    out = tmp_path / "best.csv"
    assert main(["optimize", str(smiles_run), "--property", "qed", "--budget", "300", "--method", method,
                 "--out", str(out)]) == 0
    best = pd.read_csv(out)
    assert list(best.columns) == ["SMILES", "qed", "rank"]
    assert len(best) > 0  # the small model finds a few (10 and 3 when this was written)
    from vaekit.kinds.sequence import chem

    mols = chem.molecules(best["SMILES"].tolist())
    assert all(m is not None for m in mols)
    assert best["qed"].is_monotonic_decreasing
    assert best["qed"].tolist() == pytest.approx([chem.property_of("qed")(m) for m in mols], abs=1e-3)
    assert not set(chem.canonical(mols)) & chem.canonical_set(pd.read_csv(molecules)["SMILES"])


def test_word_dropout_hides_the_decoder_inputs_only_while_training():
    torch.manual_seed(0)
    net = AutoregressiveLikelihood(vocab_size=8, z_dim=3, embed_dim=4, hidden=8, layers=1, word_dropout=1.0)
    z = torch.randn(2, 3)
    x = torch.tensor([[4, 5, 6, tok.EOS], [6, 4, 5, tok.EOS]])
    hidden = torch.tensor([[tok.BOS, tok.UNK, tok.UNK, tok.UNK]] * 2)  # every earlier token replaced
    with torch.no_grad():
        expected = torch.log_softmax(net.run(z, hidden)[0], -1).gather(-1, x.unsqueeze(-1)).squeeze(-1).sum(1)
        seen = torch.log_softmax(net.run(z, torch.cat([torch.full((2, 1), tok.BOS), x[:, :-1]], 1))[0], -1)
        seen = seen.gather(-1, x.unsqueeze(-1)).squeeze(-1).sum(1)
        net.train()
        assert torch.allclose(net(z).log_prob(x), expected, atol=1e-5)
        net.eval()
        assert torch.allclose(net(z).log_prob(x), seen, atol=1e-5)
        assert not torch.allclose(expected, seen, atol=1e-3)


def test_evaluate_scores_sequences_in_order_of_length():
    from vaekit.kinds import kind_of

    vocab = tok.fit_vocabulary([["a", "b", "c"]], None)
    rows, _ = tok.encode([["a", "b", "c"], ["a"], ["b", "c"], ["c"]], vocab, max_length=5)
    order = kind_of(DataConfig(name="x.txt", kind="text")).evaluation_order(rows)
    assert sorted(order.tolist()) == [0, 1, 2, 3]
    assert tok.lengths(rows[order]).tolist() == [2, 2, 3, 4]
    assert order[:2].tolist() == [1, 3]  # ties keep their order

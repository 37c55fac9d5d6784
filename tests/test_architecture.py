"""The architecture holds: the core imports no kind and a kind no other kind (the import graph),
and every registered kind keeps the contract on tiny data written here: it trains, every command
either works (its output checked) or exits 2 with one line, every flag of another kind exits 2
naming the flag and the kind, and the Python API gives back the kind's natural objects."""

import ast
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import vaekit
import vaekit.kinds
import vaekit.options
from vaekit.cli import main
from vaekit.commands import COMMANDS
from vaekit.errors import VaekitError
from vaekit.kinds import KINDS, registry
from vaekit.options import flag_name

from conftest import ROOT, spoken_wavs
from vaekit.kinds.audio.signal import read_wav

PACKAGE = ROOT / "src" / "vaekit"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every vaekit module `path` imports, at module level or inside functions."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("vaekit")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("vaekit"):
                found.add(target)
                found |= {f"{target}.{a.name}" for a in node.names}  # from . import files
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    return {m for m in found if m in modules and m != name}


def kind_of_module(name: str) -> str | None:
    """The kind a module belongs to (vaekit.kinds.<kind>...), None for the core."""
    parts = name.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "kinds" else None


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def test_the_core_imports_no_kind_and_kinds_import_no_other_kind():
    g = graph()
    assert "vaekit.kinds.image" in g and "vaekit.train" in g  # the walk sees the package
    upward, across = [], []
    for module, targets in g.items():
        own = kind_of_module(module)
        for target in targets:
            other = kind_of_module(target)
            if other is None:
                continue
            # The package's __init__ names the table kind's TableVAE as a public alias, imported when asked for.
            if own is None and module != "vaekit":
                upward.append((module, target))
            elif own is not None and other != own:
                across.append((module, target))
    assert not upward, f"core modules import kinds: {upward}"
    assert not across, f"kinds import other kinds: {across}"


def test_the_core_has_no_import_cycle():
    g = {m: {t for t in ts if kind_of_module(t) is None} for m, ts in graph().items() if kind_of_module(m) is None}
    g.pop("vaekit", None)  # the package re-exports; nothing in it is imported by the modules
    state, cycles = {}, []

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(g.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(g):
        if node not in state:
            visit(node, [node])
    assert not cycles, f"import cycles among core modules: {cycles}"


def test_the_graph_check_catches_an_upward_import(tmp_path):
    bad = PACKAGE / "_probe_upward.py"
    bad.write_text("from .kinds.image import ImageKind\n")
    try:
        assert "vaekit.kinds.image" in imports_of(bad)
        with pytest.raises(AssertionError, match="core modules import kinds"):
            test_the_core_imports_no_kind_and_kinds_import_no_other_kind()
    finally:
        bad.unlink()


# ---------------------------------------------------------------- tiny data of every kind

MOLECULES = ["CCO", "CCN", "CCC", "CCCO", "CC(C)O", "CC(=O)O", "c1ccccc1", "c1ccccc1O", "CC(C)C", "OCCO",
             "NCCN", "CCOC", "CCCN", "CC(N)C", "C1CCCCC1", "CCCCO", "CC=O", "COC", "CN(C)C", "ClCCl",
             "CCS", "CC#N", "C=CC", "OC(=O)C", "CCCC", "c1ccncc1", "CC(C)(C)O", "OCC(O)CO", "CCBr", "FC(F)F"]
WORDS = "the cat sat on a mat while her sister read a long letter by the fire".split()


def tiny_data(kind: str, folder: Path) -> Path:
    rng = np.random.default_rng(0)
    if kind == "image":
        x = (rng.random((60, 1, 4, 4)) > 0.5).astype(np.float32)
        np.savez(folder / "img.npz", x=x, y=rng.integers(0, 3, 60))
        return folder / "img.npz"
    if kind == "table":
        frame = pd.DataFrame({"age": rng.integers(18, 80, 30), "city": rng.choice(["a", "b", "c"], 30),
                              "score": rng.normal(size=30).round(3), "member": rng.choice([True, False], 30)})
        frame.to_csv(folder / "rows.csv", index=False)
        return folder / "rows.csv"
    if kind == "items":
        rows = [(f"u{u}", f"i{i}") for u in range(24) for i in rng.choice(15, rng.integers(5, 9), replace=False)]
        pd.DataFrame(rows, columns=["user", "item"]).to_csv(folder / "likes.csv", index=False)
        return folder / "likes.csv"
    if kind == "smiles":
        (folder / "mols.smi").write_text("\n".join(MOLECULES) + "\n")
        return folder / "mols.smi"
    if kind == "series":
        t = np.arange(80)
        frame = pd.DataFrame({"timestamp": pd.date_range("2026-01-01", periods=80, freq="5min").astype(str),
                              "load": np.sin(t / 5) + 0.1 * rng.normal(size=80), "temp": np.cos(t / 7) + t / 80})
        frame.to_csv(folder / "stream.csv", index=False)
        return folder / "stream.csv"
    if kind == "audio":
        return spoken_wavs(folder / "wavs")
    lines = [" ".join(rng.choice(WORDS, rng.integers(3, 9))) for _ in range(30)]
    (folder / "lines.txt").write_text("\n".join(lines) + "\n")
    return folder / "lines.txt"


# Model sizes that train in a second or two; the kinds' defaults otherwise.
SMALL = {"image": ["--hidden", "16", "--latent-dim", "2"], "table": ["--hidden", "16", "--latent-dim", "2"],
         "items": ["--hidden", "16", "--latent-dim", "4"], "smiles": ["--hidden", "16,32", "--latent-dim", "4"],
         "text": ["--hidden", "16,32", "--latent-dim", "4"],
         "series": ["--hidden", "16", "--latent-dim", "2", "--window", "8"],
         "audio": ["--hidden", "16", "--latent-dim", "2", "--conv-channels", "8,8"]}


@pytest.fixture(scope="module", params=sorted(KINDS))
def tiny_run(request, tmp_path_factory):
    kind = request.param
    folder = tmp_path_factory.mktemp(f"tiny-{kind}")
    data = tiny_data(kind, folder)
    run = folder / "run"
    assert main(["train", "--data", str(data), "--kind", kind, *SMALL[kind], "--epochs", "2", "--precision", "fp32",
                 "--quiet", "--out", str(run)]) == 0
    return kind, data, run


def one_line_exit_2(capsys, argv, *needles):
    capsys.readouterr()
    assert main(argv) == 2, argv
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vaekit: error:"), (argv, err)
    for needle in needles:
        assert needle in err[0], (argv, err[0])


def outcome(capsys, argv) -> int:
    """Run a command; a failure must be exit 2 with one line."""
    capsys.readouterr()
    code = main(argv)
    if code != 0:
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("vaekit: error:"), (argv, code, err)
    return code


def test_every_command_works_or_says_why_in_one_line(tiny_run, tmp_path, capsys):
    kind, data, run = tiny_run
    k = registry()[kind]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(np.isfinite(r["train_loss"]) for r in records)
    out = lambda name: str(tmp_path / name)  # noqa: E731
    sample = outcome(capsys, ["sample", str(run), "--num", "5", "--out", out("s.npy" if kind == "image" else "s.csv")])
    if kind == "image":
        x = np.load(tmp_path / "s.npy")
        assert sample == 0 and x.shape == (5, 1, 4, 4) and 0 <= x.min() and x.max() <= 1
    elif kind == "items":
        assert sample == 2  # item sets recommend; they have no sample
    elif kind == "audio":  # a folder of .wav files named by their labels, and their spectrograms
        made = sorted((tmp_path / "s.csv").glob("*.wav"))
        assert sample == 0 and len(made) == 5 and (tmp_path / "s.csv" / "spectrograms.png").exists()
    elif kind == "series":  # synthetic windows: 5 of 8 rows each
        drawn = pd.read_csv(tmp_path / "s.csv")
        assert sample == 0 and list(drawn.columns) == ["window", "step", "load", "temp"] and len(drawn) == 40
    else:
        assert sample == 0 and len(pd.read_csv(tmp_path / "s.csv")) == 5
    assert outcome(capsys, ["evaluate", str(run), "--json", "--iw-samples", "3", "--quiet"]) == 0
    figures = json.loads(capsys.readouterr().out)
    # Both are estimates (one posterior draw; three importance samples), so close, not ordered.
    assert np.isfinite(figures["neg_elbo"]) and abs(figures["nll"] - figures["neg_elbo"]) < 0.2 * abs(figures["neg_elbo"])
    assert outcome(capsys, ["encode", str(run), "--out", out("e.npy")]) == 0
    assert np.load(tmp_path / "e.npy").shape[1] == vaekit.load(run).latent_dim
    assert outcome(capsys, ["anomaly", str(run), "--data", str(data), "--out", out("a.csv")]) == 0
    assert {"score", "anomaly_score"} & set(pd.read_csv(tmp_path / "a.csv").columns)
    for command in ("reconstruct", "interpolate", "latents", "report"):
        argv = [command, str(run), "--out", out(f"{command}.{'html' if command == 'report' else 'out'}")]
        if command == "interpolate":
            argv += ["--pairs", "1", "--steps", "3"]
        code = outcome(capsys, argv)
        assert code == 2 or (tmp_path / Path(argv[3]).name).stat().st_size > 0
    for command, spec in k.commands.items():
        argv = [command, str(run), "--out", out(command)] if spec.takes_run else \
            [command, "--data", str(data), "--kind", kind, "--out", out(command)]
        if command == "detect":
            argv += ["--probation", "30", "--window", "8"]
        if command == "recommend":
            argv += ["--items", "i1,i2,i3"]
        if command == "optimize":
            argv += ["--property", "qed", "--budget", "20"]
        assert outcome(capsys, argv) in (0, 2)
    for name, other in registry().items():  # another kind's commands: one line, exit 2
        for command in set(other.commands) - set(k.commands):
            if other.commands[command].takes_run:
                one_line_exit_2(capsys, [command, str(run)], command, f"{kind} runs")
            else:
                one_line_exit_2(capsys, [command, "--data", str(data), "--kind", kind], command, kind)


def flag_value(f: dataclasses.Field) -> list[str]:
    meta, annotation = f.metadata, str(f.type)
    if "bool" in annotation:
        return []
    if meta.get("nargs"):
        return ["0"] * meta["nargs"]
    if meta.get("choices"):
        return [str(meta["choices"][0])]
    return ["1"] if any(t in annotation for t in ("int", "float")) else ["a=b" if meta.get("repeat") else "x"]


def test_help_lists_the_runs_kinds_flags(tiny_run, capsys):
    kind, data, run = tiny_run
    k = registry()[kind]
    for command in [*COMMANDS, *k.commands]:
        takes_run = command in COMMANDS or k.commands[command].takes_run
        with pytest.raises(SystemExit) as done:
            main([command, str(run), "--help"] if takes_run else [command, "--kind", kind, "--help"])
        assert done.value.code == 0
        shown = capsys.readouterr().out
        core = {f.name for f in dataclasses.fields(COMMANDS[command].options)} if command in COMMANDS else set()
        for name, other in registry().items():  # another kind's flags are not listed for this run
            for cls in ([other.command_options[command]] if command in other.command_options else []):
                for f in dataclasses.fields(cls):
                    own = k.command_options.get(command)
                    if name != kind and f.name not in core and not (
                            own and f.name in {g.name for g in dataclasses.fields(own)}):
                        assert flag_name(f) + " " not in shown and flag_name(f) + "\n" not in shown, (command, f.name)


def test_another_kinds_flags_are_refused_by_name(tiny_run, capsys):
    kind, data, run = tiny_run
    k = registry()[kind]
    refused = 0
    for name, other in registry().items():
        for command, cls in other.command_options.items():
            own = {f.name for f in dataclasses.fields(k.command_options.get(command, type("N", (), {})))} \
                if command in k.command_options else set()
            for f in dataclasses.fields(cls):
                if f.name in own or f.name in {g.name for g in dataclasses.fields(COMMANDS[command].options)}:
                    continue
                one_line_exit_2(capsys, [command, str(run), flag_name(f), *flag_value(f)], flag_name(f), f"{kind} runs")
                refused += 1
    assert refused >= 3
    for name, other in registry().items():  # train: another kind's data options
        for f in dataclasses.fields(other.Options):
            if f.name not in {g.name for g in dataclasses.fields(k.Options)}:
                one_line_exit_2(capsys, ["train", "--data", str(data), "--kind", kind, flag_name(f), *flag_value(f),
                                         "--out", str(run.parent / "never")], flag_name(f), kind)
    assert not (run.parent / "never").exists()


def test_the_python_api_gives_the_kinds_objects(tiny_run):
    kind, data, run = tiny_run
    model = vaekit.open(run)
    assert model.kind == kind
    if kind == "items":
        with pytest.raises(VaekitError, match="sample does not apply"):
            model.sample(3)
        recs = model.recommend({"alice": ["i1", "i2"], "bob": ["i3"]}, top=4)
        assert list(recs.columns) == ["user", "item", "rank", "score"] and set(recs["user"]) == {"alice", "bob"}
        assert len(recs) == 8 and not set(recs[recs["user"] == "alice"]["item"]) & {"i1", "i2"}
        z = model.encode([["i1", "i2"], ["i3", "i4", "i5"]])
        assert z.shape == (2, model.vae.latent_dim)
        return
    drawn = model.sample(4, seed=1)
    if kind == "image":
        assert drawn.shape == (4, 1, 4, 4)
        again = vaekit.open(run).sample(4, seed=1)
        assert np.array_equal(drawn, again)  # the same seed, the same draws
    elif kind == "table":
        assert isinstance(drawn, pd.DataFrame) and list(drawn.columns) == ["age", "city", "score", "member"]
    elif kind == "series":
        assert isinstance(drawn, pd.DataFrame) and list(drawn.columns) == ["window", "step", "load", "temp"]
    elif kind == "audio":
        assert len(drawn.waves) == 4 and all(w.ndim == 1 and np.abs(w).max() <= 1 for w in drawn.waves)
    else:
        assert isinstance(drawn, list) and len(drawn) == 4 and all(isinstance(s, str) for s in drawn)
    inputs = {"image": lambda: np.load(data)["x"][:6], "table": lambda: pd.read_csv(data).head(6),
              "series": lambda: pd.read_csv(data).head(6),
              "audio": lambda: [read_wav(p)[0] for p in sorted(data.glob("*.wav"))[:6]],
              "smiles": lambda: MOLECULES[:6], "text": lambda: data.read_text().splitlines()[:6]}[kind]()
    z = model.encode(inputs)
    assert z.shape == (6, model.vae.latent_dim) and np.isfinite(z).all()
    scores = model.score(inputs)
    assert scores.shape == (6,) and np.isfinite(scores).all()
    rec = model.reconstruct(inputs)
    assert len(rec) == (12 if kind == "table" else 6)  # a table pairs each row with its reconstruction
    figures = model.evaluate(inputs, iw_samples=2)
    assert figures["num_examples"] == 6 and abs(figures["nll"] - figures["neg_elbo"]) < 0.2 * abs(figures["neg_elbo"])
    with pytest.raises(VaekitError, match="does not apply"):
        model.sample(2, unconstrained=True) if kind != "smiles" else model.sample(2, condition=["a=b"])


def test_small_counts_and_long_inputs_are_said_in_one_line(tiny_run, tmp_path, capsys):
    kind, data, run = tiny_run
    one_line_exit_2(capsys, ["sample", str(run), "--num", "0"], "--num")  # every kind, not only some
    if kind == "text":  # longer than the run's --max-length: left out and counted, as training does
        long = tmp_path / "long.txt"
        long.write_text(" ".join(WORDS * 5) + "\n" + data.read_text())
        capsys.readouterr()
        assert main(["evaluate", str(run), "--data", str(long), "--iw-samples", "2", "--json", "--quiet"]) == 0
        said = capsys.readouterr()
        assert json.loads(said.out)["num_examples"] == 30 and "1 examples longer than --max-length" in said.err


def test_encode_and_anomaly_read_their_inputs_once(tiny_run, tmp_path, monkeypatch):
    kind, data, run = tiny_run
    cls = type(registry()[kind])
    calls = []
    original = cls.inputs
    monkeypatch.setattr(cls, "inputs", lambda self, *args: calls.append(args) or original(self, *args))
    assert main(["encode", str(run), "--data", str(data), "--out", str(tmp_path / "e.csv")]) == 0
    assert len(calls) == 1
    assert main(["anomaly", str(run), "--data", str(data), "--out", str(tmp_path / "a.csv")]) == 0
    assert len(calls) == (1 if kind == "series" else 2)  # a series scores its streams with its own reader
    rows = pd.read_csv(tmp_path / "e.csv")
    assert len(rows) == len(pd.read_csv(tmp_path / "a.csv"))
    assert ("id" in rows.columns) == (kind in ("items", "smiles", "text", "series", "audio"))


def test_posterior_init_std_reaches_every_kinds_encoder(tiny_run):
    import math

    import torch

    from vaekit.checkpoint import build_vae, open_run
    from vaekit.vae import output_bias

    kind, data, run = tiny_run
    loaded = open_run(run)
    shapes = [loaded.cfg.model.hidden] + ([[]] if kind == "items" else [])  # items: with no hidden layer too
    for hidden in shapes:
        model = dataclasses.replace(loaded.cfg.model, posterior_init_std=0.05, hidden=hidden)
        vae = build_vae(dataclasses.replace(loaded.cfg, model=model), loaded.kind, loaded.schema, loaded.vae.x_shape)
        d = model.latent_dim
        assert torch.allclose(output_bias(vae.encoder, 2 * d)[d:], torch.full((d,), 2 * math.log(0.05)))


# ---------------------------------------------------------------- a new kind, from outside the core

@dataclasses.dataclass
class EchoOptions:
    times: int = vaekit.options.option(1, "how many times")


class ToyKind(vaekit.kinds.Kind):
    """A kind defined here, registered by one line in KINDS: its command and flag reach the CLI."""

    name = "toy"
    commands = {"echo": vaekit.kinds.KindCommand("print the file's text", EchoOptions, "echo", takes_run=False)}

    def detect(self, name: str) -> bool:
        return name.endswith(".toy")

    def echo(self, opts) -> None:
        print(Path(opts.data).read_text().strip() * opts.times)


def test_a_kind_adds_a_command_with_one_registry_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(KINDS, "toy", "test_architecture:ToyKind")
    registry.cache_clear()
    try:
        (tmp_path / "a.toy").write_text("hi")
        assert main(["echo", "--data", str(tmp_path / "a.toy"), "--times", "3"]) == 0
        assert capsys.readouterr().out.strip() == "hihihi"
        one_line_exit_2(capsys, ["echo", "--data", "digits"], "echo", "image")
    finally:
        registry.cache_clear()


def test_fit_takes_a_path_or_a_dataframe_and_options_by_name(tmp_path):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.normal(size=40), "kind": rng.choice(["p", "q"], 40)})
    model = vaekit.fit(frame, epochs=2, hidden=[16], latent_dim=2, target="kind", out=tmp_path / "t")
    assert model.kind == "table" and model.run.cfg.data.options["target"] == "kind"
    rows = model.sample(5, seed=0)
    assert list(rows.columns) == ["x", "kind"] and set(rows["kind"]) <= {"p", "q"}
    text = tiny_data("text", tmp_path)
    model = vaekit.fit(text, epochs=2, hidden=[16, 32], latent_dim=4, out=tmp_path / "s")
    assert model.kind == "text" and len(model.sample(3)) == 3
    assert vaekit.open(tmp_path / "s").encode(["the cat sat"]).shape == (1, 4)
    with pytest.raises(VaekitError, match="target does not apply to text data"):
        vaekit.fit(text, target="x", out=tmp_path / "never")
    assert not (tmp_path / "never").exists()

"""A fuzzed front door: mutated files of every kind vaekit reads either load or raise VaekitError
(the one-line error of the CLI), never anything else. Over 1,000 cases in all."""

import gzip
import io
import json
import shutil
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import vaekit
from vaekit.config import DataConfig, load_config
from vaekit import load_data
from vaekit.kinds.image.read import read_idx
from vaekit.errors import VaekitError

from conftest import image_vae, small_config

CASES = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@st.composite
def mutated(draw, data: bytes):
    """Truncate, flip, overwrite with extreme values, insert or append bytes."""
    raw = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "big", "insert", "append"]))
        pos = draw(st.integers(0, max(0, len(raw) - 1)))
        if kind == "truncate":
            del raw[pos:]
        elif kind == "flip" and raw:
            raw[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "big":
            raw[pos : pos + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x00\x00\x00"]))
        elif kind == "insert":
            raw[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:
            raw += draw(st.binary(min_size=1, max_size=64))
    return bytes(raw)


def loads_or_refuses(fn):
    try:
        fn()
    except VaekitError as e:
        assert "\n" not in str(e)


def idx_file(arr):
    return bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape) + arr.tobytes()


IMAGES = (np.arange(30 * 8 * 8) % 251).astype(np.uint8).reshape(30, 8, 8)
LABELS = (np.arange(30) % 10).astype(np.uint8)


def idx_folder(tmp, images=IMAGES, labels=LABELS, gz=False):
    folder = tmp / "mnist"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for split, sl in (("train", slice(0, 20)), ("t10k", slice(20, 30))):
        for kind, arr in (("images-idx3", images[sl]), ("labels-idx1", labels[sl])):
            raw = idx_file(arr)
            (folder / f"{split}-{kind}-ubyte{'.gz' if gz else ''}").write_bytes(gzip.compress(raw) if gz else raw)
    return folder


@CASES
@given(st.data())
def test_fuzz_idx(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("idx")
    gz = data.draw(st.booleans())
    folder = idx_folder(tmp, gz=gz)
    target = folder / data.draw(st.sampled_from(sorted(p.name for p in folder.iterdir())))
    raw = gzip.decompress(target.read_bytes()) if gz else target.read_bytes()
    bad = data.draw(mutated(raw))
    target.write_bytes(gzip.compress(bad) if gz and data.draw(st.booleans()) else bad)
    loads_or_refuses(lambda: load_data(DataConfig(name="mnist", data_dir=str(tmp), val_fraction=0.1)))


def npy_bytes(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def npz_bytes(**arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@CASES
@given(st.data())
def test_fuzz_arrays(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("npy")
    kind = data.draw(st.sampled_from(["npy", "npz"]))
    valid = npy_bytes(IMAGES) if kind == "npy" else npz_bytes(x=IMAGES, y=LABELS.astype(np.int64))
    path = tmp / f"d.{kind}"
    path.write_bytes(data.draw(mutated(valid)))
    loads_or_refuses(lambda: load_data(DataConfig(name=str(path))))


@CASES
@given(st.data())
def test_fuzz_images_and_csv(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("img")
    if data.draw(st.booleans()):
        folder = tmp / "imgs"
        folder.mkdir()
        for i in range(4):
            buf = io.BytesIO()
            Image.fromarray(IMAGES[i]).save(buf, format=data.draw(st.sampled_from(["PNG", "BMP", "GIF"])))
            raw = buf.getvalue()
            (folder / f"{i}.png").write_bytes(data.draw(mutated(raw)) if i == 2 else raw)
        loads_or_refuses(lambda: load_data(DataConfig(name=str(folder))))
    else:
        rows = ["a,b,c,label"] + [f"{i / 10},{i % 3 / 3},0.5,{i % 2}" for i in range(12)]
        path = tmp / "t.csv"
        path.write_bytes(data.draw(mutated("\n".join(rows).encode())))
        loads_or_refuses(lambda: load_data(DataConfig(name=str(path))))


@CASES
@given(st.data())
def test_fuzz_config(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("cfg")
    valid = json.dumps(small_config().to_dict()).encode()
    path = tmp / "c.json"
    if data.draw(st.booleans()):
        path.write_bytes(data.draw(mutated(valid)))
    else:  # well-formed JSON with wrong types and values
        d = small_config().to_dict()
        section = data.draw(st.sampled_from(sorted(d)))
        key = data.draw(st.sampled_from(sorted(d[section])))
        d[section][key] = data.draw(st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                                              st.floats(allow_nan=True), st.text(max_size=5),
                                              st.lists(st.integers(-5, 10**9), max_size=3)))
        path.write_text(json.dumps(d))
    loads_or_refuses(lambda: image_vae(load_config(path).model, (1, 8, 8)))


@pytest.fixture(scope="module")
def run(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("fuzzrun") / "run"
    vaekit.train(small_config(epochs=1), out, data=digits, progress=False)
    return out


@CASES
@given(st.data())
def test_fuzz_checkpoint(run, tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("ckpt") / "run"
    shutil.copytree(run, tmp)
    name = data.draw(st.sampled_from(["model.safetensors", "config.json", "checkpoint.safetensors"]))
    raw = (tmp / name).read_bytes()
    if name.endswith(".safetensors") and data.draw(st.booleans()):
        # mutate inside the JSON header, where shapes, offsets and metadata live
        n = int.from_bytes(raw[:8], "little")
        header = data.draw(mutated(raw[8 : 8 + n]))
        raw = len(header).to_bytes(8, "little") + header + raw[8 + n:]
    else:
        raw = data.draw(mutated(raw))
    (tmp / name).write_bytes(raw)
    if name == "checkpoint.safetensors":
        loads_or_refuses(lambda: vaekit.train(small_config(epochs=2), tmp, resume=True, data=None, progress=False))
    else:
        loads_or_refuses(lambda: vaekit.load(tmp))


# ---------------------------------------------------------------- the corpus: cases fuzzing found


def test_corpus_npy_header_that_breaks_numpys_tokenizer(tmp_path):
    raw = npy_bytes(IMAGES).replace(b"False", b"Fal{e", 1)
    (tmp_path / "d.npy").write_bytes(raw)
    with pytest.raises(VaekitError, match="d.npy: not a readable .npy array"):
        load_data(DataConfig(name=str(tmp_path / "d.npy")))


def test_corpus_huge_declared_sizes_allocate_nothing(tmp_path):
    huge = npy_bytes(IMAGES).replace(b"(30, 8, 8)", b"(99999999999, 99999, 8)", 1)
    (tmp_path / "h.npy").write_bytes(huge)
    with pytest.raises(VaekitError, match="h.npy: truncated: header declares"):
        load_data(DataConfig(name=str(tmp_path / "h.npy")))
    (tmp_path / "h.npz").write_bytes(npz_bytes(x=IMAGES))
    with zipfile.ZipFile(tmp_path / "h.npz") as z:
        member = z.read("x.npy").replace(b"(30, 8, 8)", b"(99999999999, 8, 8)", 1)
    with zipfile.ZipFile(tmp_path / "h.npz", "w") as z:
        z.writestr("x.npy", member)
    with pytest.raises(VaekitError, match=r"h.npz\[x.npy\]: truncated"):
        load_data(DataConfig(name=str(tmp_path / "h.npz")))
    folder = idx_folder(tmp_path)
    raw = (folder / "train-images-idx3-ubyte").read_bytes()
    (folder / "train-images-idx3-ubyte").write_bytes(raw[:4] + b"\xff\xff\xff\xff" * 3 + raw[16:])
    with pytest.raises(VaekitError, match="truncated: header declares"):
        read_idx(folder / "train-images-idx3-ubyte")


def test_corpus_empty_activation_name(tmp_path):
    d = small_config().to_dict()
    d["model"]["activation"] = ""
    (tmp_path / "c.json").write_text(json.dumps(d))
    with pytest.raises(VaekitError, match="unknown activation ''"):
        vaekit.VAE(load_config(tmp_path / "c.json").model, (1, 8, 8))


def test_corpus_wrong_types_in_config(tmp_path):
    d = small_config().to_dict()
    d["model"]["latent_dim"] = "20"
    (tmp_path / "c.json").write_text(json.dumps(d))
    with pytest.raises(VaekitError, match="latent_dim must be int"):
        load_config(tmp_path / "c.json")
    d["model"]["latent_dim"] = 10**12
    (tmp_path / "c.json").write_text(json.dumps(d))
    with pytest.raises(VaekitError, match="latent_dim must be in"):
        load_config(tmp_path / "c.json")


# ---- the other kinds' files: tables (CSV, gzipped CSV, Parquet), SMILES, text, interactions

def table_bytes(fmt: str) -> bytes:
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"age": rng.integers(18, 80, 25), "city": rng.choice(["a", "b", "c"], 25),
                          "score": rng.normal(size=25).round(3), "member": rng.choice([True, False], 25)})
    if fmt == "parquet":
        buf = io.BytesIO()
        frame.to_parquet(buf)
        return buf.getvalue()
    text = frame.to_csv(index=False).encode()
    return gzip.compress(text) if fmt == "csv.gz" else text


FILES = {
    "table.csv": ("table", lambda: table_bytes("csv")),
    "table.csv.gz": ("table", lambda: table_bytes("csv.gz")),
    "table.parquet": ("table", lambda: table_bytes("parquet")),
    "mols.smi": ("smiles", lambda: "\n".join(["CCO", "c1ccccc1", "CC(=O)O", "CCN", "OCCO", "C1CCCCC1"] * 4).encode()),
    "lines.txt": ("text", lambda: "\n".join(f"the cat sat on mat {i} while it rained" for i in range(25)).encode()),
    "likes.csv": ("items", lambda: "user,item\n".encode() + "".join(
        f"u{u},i{(u * 7 + k) % 13}\n" for u in range(12) for k in range(6)).encode()),
}


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(st.data())
def test_fuzz_every_kinds_files(tmp_path_factory, data):
    """Mutated tables, Parquet files, SMILES, text and interaction files load or raise VaekitError."""
    from vaekit.kinds import registry

    name = data.draw(st.sampled_from(sorted(FILES)))
    kind, make = FILES[name]
    path = tmp_path_factory.mktemp("kinds") / name
    path.write_bytes(data.draw(mutated(make())))
    cfg = DataConfig(name=str(path), kind=kind)
    loads_or_refuses(lambda: registry()[kind].load(cfg))

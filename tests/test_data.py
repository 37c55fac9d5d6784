import gzip

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit.config import DataConfig
from vaekit import load_data
from vaekit.data import batch_indices
from vaekit.kinds.image.read import read_idx
from vaekit.errors import VaekitError


def idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


@pytest.fixture(scope="module")
def mnist_slice(mnist_dir):
    """The first 300 real MNIST test images and labels."""
    images = read_idx(mnist_dir / "mnist" / "t10k-images-idx3-ubyte.gz")[:300]
    labels = read_idx(mnist_dir / "mnist" / "t10k-labels-idx1-ubyte.gz")[:300]
    return images, labels


def write_idx_set(folder, images, labels, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    for split, (x, y) in {"train": (images[:200], labels[:200]), "t10k": (images[200:], labels[200:])}.items():
        for kind, arr in (("images-idx3", x), ("labels-idx1", y)):
            raw = idx_bytes(arr)
            name = f"{split}-{kind}-ubyte"
            if gz:
                (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
            else:
                (folder / name).write_bytes(raw)


def test_digits_splits_are_disjoint_and_scaled(digits):
    n = len(digits.train_x) + len(digits.val_x) + len(digits.test_x)
    assert n == 1797
    assert digits.shape == (1, 8, 8)
    assert 0.0 <= digits.train_x.min() and digits.train_x.max() == 1.0
    assert len(digits.test_x) == round(1797 * 0.2)
    assert digits.train_y is not None and digits.train_y.max() == 9


def test_real_mnist_idx_reads(mnist_dir):
    x = read_idx(mnist_dir / "mnist" / "t10k-images-idx3-ubyte.gz")
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8 and x.max() == 255


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_loads_gzipped_or_not(tmp_path, mnist_slice, gz):
    write_idx_set(tmp_path / "mnist", *mnist_slice, gz=gz)
    splits = load_data(DataConfig(name="mnist", data_dir=str(tmp_path), val_fraction=0.1))
    assert splits.shape == (1, 28, 28)
    assert (len(splits.train_x), len(splits.val_x), len(splits.test_x)) == (180, 20, 100)
    assert torch.equal(splits.test_x[0, 0], torch.tensor(mnist_slice[0][200]).float() / 255)


def test_data_dir_from_environment(tmp_path, mnist_slice, monkeypatch):
    write_idx_set(tmp_path, *mnist_slice)  # files directly in the folder also work
    monkeypatch.setenv("VAEKIT_DATA_DIR", str(tmp_path))
    assert len(load_data(DataConfig(name="fashion-mnist")).test_x) == 100


def corrupt(tmp_path, mnist_slice, name, mutate):
    write_idx_set(tmp_path / "mnist", *mnist_slice, gz=False)
    path = tmp_path / "mnist" / name
    path.write_bytes(mutate(path.read_bytes()))
    with pytest.raises(VaekitError) as err:
        load_data(DataConfig(name="mnist", data_dir=str(tmp_path)))
    return str(err.value)


def test_truncated_idx_is_refused(tmp_path, mnist_slice):
    msg = corrupt(tmp_path, mnist_slice, "train-images-idx3-ubyte", lambda b: b[:-100])
    assert "train-images-idx3-ubyte" in msg and "truncated" in msg


def test_wrong_magic_is_refused(tmp_path, mnist_slice):
    msg = corrupt(tmp_path, mnist_slice, "t10k-images-idx3-ubyte", lambda b: b"\x08\x00" + b[2:])
    assert "t10k-images-idx3-ubyte" in msg and "magic" in msg


def test_label_count_mismatch_is_refused(tmp_path, mnist_slice):
    images, labels = mnist_slice
    write_idx_set(tmp_path / "mnist", images, labels)
    (tmp_path / "mnist" / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels[:150])))
    with pytest.raises(VaekitError, match="150 labels for 200 images"):
        load_data(DataConfig(name="mnist", data_dir=str(tmp_path)))


def test_corrupt_gzip_is_refused(tmp_path, mnist_slice):
    write_idx_set(tmp_path / "mnist", *mnist_slice)
    path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(VaekitError, match="train-images-idx3-ubyte.gz: corrupt gzip"):
        load_data(DataConfig(name="mnist", data_dir=str(tmp_path)))


def test_missing_data_dir_is_refused(tmp_path):
    with pytest.raises(VaekitError, match="data directory not found"):
        load_data(DataConfig(name="mnist", data_dir=str(tmp_path / "nowhere")))


def test_npz_with_labels_and_npy_with_nan(tmp_path, digits):
    x = (digits.train_x[:, 0].numpy() * 255).astype(np.uint8)  # (N, 8, 8) bytes
    np.savez(tmp_path / "d.npz", x=x, y=digits.train_y.numpy())
    splits = load_data(DataConfig(name=str(tmp_path / "d.npz")))
    assert splits.shape == (1, 8, 8) and splits.train_y is not None
    assert len(splits.train_x) + len(splits.val_x) + len(splits.test_x) == len(x)
    bad = digits.train_x.numpy().copy()
    bad[3, 0, 2, 2] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(VaekitError, match="bad.npy: contains NaN"):
        load_data(DataConfig(name=str(tmp_path / "bad.npy")))


def test_truncated_npy_is_refused(tmp_path, digits):
    np.save(tmp_path / "t.npy", digits.train_x.numpy())
    raw = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(VaekitError, match="t.npy: truncated"):
        load_data(DataConfig(name=str(tmp_path / "t.npy")))


def save_images(folder, arrays, sizes=None):
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True, exist_ok=True)
    for i, arr in enumerate(arrays):
        Image.fromarray(arr).save(folder / ("a" if i % 2 else "b") / f"{i:03d}.png")


def test_image_folder_with_class_subfolders(tmp_path, mnist_slice):
    save_images(tmp_path, list(mnist_slice[0][:40]))
    splits = load_data(DataConfig(name=str(tmp_path)))
    assert splits.shape == (1, 28, 28)
    assert set(torch.cat([splits.train_y, splits.val_y, splits.test_y]).tolist()) == {0, 1}


def test_mixed_size_and_unreadable_images_are_refused(tmp_path, mnist_slice):
    save_images(tmp_path, list(mnist_slice[0][:6]))
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "a" / "odd.png")
    with pytest.raises(VaekitError, match=r"odd.png: size \(20, 20\) differs"):
        load_data(DataConfig(name=str(tmp_path)))
    (tmp_path / "a" / "odd.png").write_bytes(b"not a png at all")
    with pytest.raises(VaekitError, match="odd.png: unreadable image"):
        load_data(DataConfig(name=str(tmp_path)))


def test_static_binarization_is_fixed_and_binary():
    a = load_data(DataConfig(options={"binarize": "static"}))
    b = load_data(DataConfig(options={"binarize": "static"}))
    assert torch.equal(a.train_x, b.train_x)
    assert set(a.train_x.unique().tolist()) == {0.0, 1.0}
    assert set(a.test_x.unique().tolist()) == {0.0, 1.0}


def test_batches_cover_every_example_once():
    g = torch.Generator().manual_seed(0)
    batches = batch_indices(1000, 128, g, "cpu")
    assert [len(b) for b in batches] == [128] * 7 + [104]
    assert torch.equal(torch.cat(batches).sort().values, torch.arange(1000))

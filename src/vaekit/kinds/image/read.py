"""Reading images: IDX (MNIST, Fashion-MNIST), scikit-learn's 8x8 digits, .npy/.npz arrays,
folders of images and CSV tables of pixels (with --kind image), as (N, C, H, W) tensors in [0, 1],
split, with classes left out and binarised as the run's options say.

Everything is validated on the way in: a bad file raises VaekitError naming the file and the
problem.
"""

from __future__ import annotations

import dataclasses
import gzip
import zlib
import io
import math
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from ...config import DataConfig
from ...data import Splits, as_tensor, split_indices
from ...errors import VaekitError

IDX_SETS = ("mnist", "fashion-mnist")
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
ARRAY_SUFFIXES = {".npy", ".npz"}
IDX_DTYPE = {0x08: np.uint8}  # MNIST-style sets store unsigned bytes; others are refused


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzipped or not); checks magic, dimensions and length before use."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise VaekitError(f"{path}: file not found") from None
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise VaekitError(f"{path}: corrupt gzip data ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise VaekitError(f"{path}: not an IDX file (bad magic number)")
    dtype, ndim = IDX_DTYPE.get(raw[2]), raw[3]
    if dtype is None or not 1 <= ndim <= 3:
        raise VaekitError(f"{path}: unsupported IDX type 0x{raw[2]:02x} with {ndim} dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise VaekitError(f"{path}: truncated IDX header")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + math.prod(dims)  # Python ints: a forged header cannot overflow
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "has trailing bytes"
        raise VaekitError(f"{path}: {what}: header declares {dims} ({expected} bytes), file has {len(raw)}")
    return np.frombuffer(raw, dtype, offset=header).reshape(dims)


def find_idx_dir(name: str, data_dir: str | None) -> Path:
    root = data_dir or os.environ.get("VAEKIT_DATA_DIR")
    if not root:
        raise VaekitError(f"data set {name!r} needs --data-dir DIR or $VAEKIT_DATA_DIR (folder of IDX files)")
    root = Path(root)
    if not root.is_dir():
        raise VaekitError(f"{root}: data directory not found")
    for folder in (root / name, root):
        if any((folder / (IDX_FILES["train"][0] + s)).exists() for s in ("", ".gz")):
            return folder
    raise VaekitError(f"{root}: no {IDX_FILES['train'][0]}[.gz] for {name!r} here or in {root / name}")


def idx_path(folder: Path, stem: str) -> Path:
    for suffix in ("", ".gz"):
        if (folder / (stem + suffix)).exists():
            return folder / (stem + suffix)
    raise VaekitError(f"{folder / stem}[.gz]: file not found")


def load_idx_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images_path, labels_path = (idx_path(folder, s) for s in IDX_FILES[split])
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise VaekitError(f"{images_path}: expected 3-D images, got shape {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise VaekitError(f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path.name}")
    return images[:, None], labels


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images[:, None] / 16.0).astype(np.float32), d.target


def checked_pixels(x: np.ndarray, source: str) -> np.ndarray:
    """Values ready for as_tensor: 8-bit pixels stay 8-bit (as_tensor scales them to [0, 1] after
    the splits, a quarter of the bytes to copy); other integers are scaled to [0, 1] here; floats
    must already be finite."""
    if x.dtype == np.bool_:
        return x.astype(np.float32)
    if x.dtype == np.uint8:
        return x
    if np.issubdtype(x.dtype, np.integer):
        if x.size and (x.min() < 0 or x.max() > 255):
            raise VaekitError(f"{source}: integer values must lie in [0, 255]")
        return x.astype(np.float32) / 255.0
    if not np.issubdtype(x.dtype, np.floating):
        raise VaekitError(f"{source}: unsupported dtype {x.dtype}")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise VaekitError(f"{source}: contains NaN or infinite values")
    return x


def to_nchw(x: np.ndarray, source: str) -> np.ndarray:
    """(N, D) -> (N, 1, 1, D); (N, H, W) -> (N, 1, H, W); NHWC with 1 or 3 channels -> NCHW."""
    if x.ndim == 2:
        return x[:, None, None, :]
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[1] in (1, 3):
            return x
        if x.shape[3] in (1, 3):
            return x.transpose(0, 3, 1, 2)
    raise VaekitError(f"{source}: expected (N, D), (N, H, W) or (N, C, H, W) arrays, got shape {x.shape}")


def check_npy_header(f, size: int, source: str) -> None:
    """Compare the array size an .npy header declares with the bytes really there, before numpy
    allocates anything for it."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=10_000)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=10_000)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except Exception as e:  # numpy's header parser fails in many ways (ValueError, TokenError, ...)
        raise VaekitError(f"{source}: not a readable .npy array ({type(e).__name__})") from None
    if dtype.hasobject:
        raise VaekitError(f"{source}: object arrays are refused (they would need pickle)")
    if math.prod(shape) * dtype.itemsize > size - f.tell():
        raise VaekitError(f"{source}: truncated: header declares {shape} {dtype}, file is {size} bytes")


def check_array_file(path: Path) -> None:
    try:
        with open(path, "rb") as f:
            if f.read(4) == b"PK\x03\x04":
                with zipfile.ZipFile(path) as z:
                    for info in z.infolist():
                        with z.open(info) as member:
                            check_npy_header(member, info.file_size, f"{path}[{info.filename}]")
            else:
                f.seek(0)
                check_npy_header(f, path.stat().st_size, str(path))
    except FileNotFoundError:
        raise VaekitError(f"{path}: file not found") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError, ValueError) as e:
        raise VaekitError(f"{path}: not a readable .npz archive ({e})") from None


def load_csv(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """A numeric table with a header row; a column named `label` becomes the labels."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise VaekitError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise VaekitError(f"{path}: not a readable text file ({e})") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        raise VaekitError(f"{path}: expected a header row and at least one data row")
    names = [n.strip() for n in lines[0].split(",")]
    try:
        table = np.loadtxt(io.StringIO("\n".join(lines[1:])), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise VaekitError(f"{path}: not a numeric table ({str(e).splitlines()[0]})") from None
    if table.shape[1] != len(names):
        raise VaekitError(f"{path}: {table.shape[1]} values a row but {len(names)} column names")
    y = None
    if "label" in names:
        col = names.index("label")
        y = table[:, col]
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise VaekitError(f"{path}: the label column must hold integers")
        y, table = y.astype(np.int64), np.delete(table, col, axis=1)
    if table.shape[1] == 0:
        raise VaekitError(f"{path}: no feature columns")
    return to_nchw(checked_pixels(table, str(path)), str(path)), y


def load_array_file(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    check_array_file(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise VaekitError(f"{path}: file not found") from None
    except (ValueError, OSError, EOFError) as e:
        raise VaekitError(f"{path}: not a readable .npy/.npz file ({e})") from None
    y = None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = loaded.files
            if not keys:
                raise VaekitError(f"{path}: empty .npz archive")
            try:
                xkey = next((k for k in ("x", "X", "images", "data") if k in keys), keys[0])
                ykey = next((k for k in ("y", "Y", "labels", "targets") if k in keys and k != xkey), None)
                x = loaded[xkey]
                y = loaded[ykey] if ykey else None
            except Exception as e:  # a damaged zip member fails in many ways (zlib, zipfile, numpy)
                raise VaekitError(f"{path}: corrupt .npz member ({e})") from None
    else:
        x = loaded
    if x.ndim < 2 or len(x) == 0:
        raise VaekitError(f"{path}: expected a non-empty array of examples, got shape {x.shape}")
    if y is not None and (y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer)):
        raise VaekitError(f"{path}: labels must be {len(x)} integers, got shape {y.shape} {y.dtype}")
    return to_nchw(checked_pixels(x, str(path)), str(path)), y


def load_image_folder(root: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Images under `root`; sub-folders name the classes when there are any."""
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise VaekitError(f"{root}: no image files found")
    classes = sorted({p.parent for p in files})
    images, modes = [], set()
    for p in files:
        try:
            with Image.open(p) as im:
                im.load()
                images.append(im.copy())
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as e:
            raise VaekitError(f"{p}: unreadable image ({e})") from None
        modes.add("L" if images[-1].mode in ("1", "L", "LA", "I;16", "I") else "RGB")
        if images[-1].size != images[0].size:
            raise VaekitError(f"{p}: size {images[-1].size} differs from {files[0]} {images[0].size}")
    mode = "L" if modes == {"L"} else "RGB"
    x = np.stack([np.asarray(im.convert(mode), dtype=np.uint8) for im in images])
    y = np.array([classes.index(p.parent) for p in files]) if len(classes) > 1 else None
    return to_nchw(checked_pixels(x, str(root)), str(root)), y


def load_file(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Examples and optional labels of a .npy/.npz file or an image folder."""
    if path.is_dir():
        return load_image_folder(path)
    if path.suffix.lower() in (".npy", ".npz"):
        return load_array_file(path)
    if path.suffix.lower() == ".csv":
        return load_csv(path)
    if not path.exists():
        raise VaekitError(f"{path}: unknown data set (not digits/mnist/fashion-mnist, nor an existing file or folder)")
    raise VaekitError(f"{path}: unsupported data file (use .npy, .npz, .csv or a folder of images)")


def is_named(name: str) -> bool:
    return name == "digits" or name in IDX_SETS


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample each pixel as Bernoulli(x): the dynamic binarization of Salakhutdinov & Murray (2008)."""
    return torch.bernoulli(x, generator=generator)


def load_images(cfg: DataConfig, options) -> Splits:
    """Load, validate, split and (statically) binarize the configured image set; `options` are
    the image kind's (binarize, exclude_classes)."""
    name = cfg.name
    if name == "digits":
        x, y = load_digits_arrays()
        test = None
    elif name in IDX_SETS:
        folder = find_idx_dir(name, cfg.data_dir)
        x, y = load_idx_split(folder, "train")
        test = load_idx_split(folder, "test")
        x, test = checked_pixels(x, str(folder)), (checked_pixels(test[0], str(folder)), test[1])
    else:
        x, y = load_file(Path(name))
        test = None
    if cfg.test_data:
        test = load_file(Path(cfg.test_data))
        if test[0].shape[1:] != x.shape[1:]:
            raise VaekitError(f"{cfg.test_data}: examples of shape {test[0].shape[1:]}, training has {x.shape[1:]}")
    if test is None:
        keep, held = split_indices(len(x), cfg.test_fraction, cfg.split_seed)
        test = (x[held], None if y is None else y[held])
        x, y = x[keep], None if y is None else y[keep]
    if options.exclude_classes:
        if y is None:
            raise VaekitError(f"{name}: exclude_classes needs labelled data")
        keep = ~np.isin(y, options.exclude_classes)
        x, y = x[keep], y[keep]
    val_fraction = cfg.val_fraction if cfg.val_fraction is not None else (1 / 60 if name in IDX_SETS else 0.1)
    train_i, val_i = split_indices(len(x), val_fraction, cfg.split_seed + 1)
    train_i = train_i[: cfg.max_train]
    t = lambda a, i: None if a is None else as_tensor(a[i], torch.long)
    splits = Splits(
        as_tensor(x[train_i]), t(y, train_i), as_tensor(x[val_i]), t(y, val_i),
        as_tensor(test[0]), None if test[1] is None else as_tensor(test[1], torch.long),
    )
    if options.binarize != "none":
        # Evaluation splits are binarized once, with a fixed seed, so test figures are stable.
        g = torch.Generator().manual_seed(cfg.split_seed)
        splits.val_x, splits.test_x = binarize(splits.val_x, g), binarize(splits.test_x, g)
        if options.binarize == "static":
            splits.train_x = binarize(splits.train_x, g)
    return splits


def load_image_inputs(cfg: DataConfig, options, name: str | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Inputs to score or picture, `name` defaulting to the run's data: a named set means its
    test split, a file or folder all of it (binarized with the fixed seed when the config
    binarizes)."""
    name = name or cfg.name
    if is_named(name):
        splits = load_images(dataclasses.replace(cfg, name=name, test_data=None), options)
        return splits.test_x, splits.test_y
    x, y = load_file(Path(name))
    x, y = as_tensor(x), None if y is None else as_tensor(y, torch.long)
    if options.binarize != "none":
        x = binarize(x, torch.Generator().manual_seed(cfg.split_seed))
    return x, y



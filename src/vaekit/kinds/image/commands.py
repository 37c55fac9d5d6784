"""The commands on an image run: draws, reconstructions and paths as (N, C, H, W) tensors in
[0, 1], written as PNG grids (or .npy arrays); the decoded manifold; the report's pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ... import explore, files
from ...data import as_tensor
from ...errors import VaekitError
from ...plotting import save_grid, save_pairs
from ...pages import figure, grid_uri, latent_scatter
from .read import binarize, checked_pixels, to_nchw

OUTPUTS = {"sample": "samples.png", "reconstruct": "reconstructions.png", "interpolate": "interpolations.png"}


def class_cycle(vae, num: int) -> torch.Tensor | None:
    """Labels 0, 1, ..., K-1, 0, ... for a conditional model's `num` draws; None otherwise."""
    if not vae.conditional:
        return None
    return (torch.arange(num) % vae.cfg.num_classes).to(next(vae.parameters()).device)


def tensors(run, data) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Images from Python: an array (N, H, W), (N, C, H, W), NHWC or (N, D) of 8-bit or [0, 1]
    values, binarised as the run's data was; or {"images": array, "labels": (N,) ints}."""
    labels = None
    if isinstance(data, dict):
        data, labels = data["images"], data.get("labels")
    x = to_nchw(checked_pixels(np.asarray(data), "the array"), "the array")
    x = as_tensor(x)
    if tuple(x.shape[1:]) != run.vae.x_shape:
        raise VaekitError(f"the array holds images of shape {tuple(x.shape[1:])}, the model takes {run.vae.x_shape}")
    if run.kind.options(run.cfg.data).binarize != "none":
        x = binarize(x, torch.Generator().manual_seed(run.cfg.data.split_seed))
    return x, None if labels is None else torch.as_tensor(labels, dtype=torch.long)


def from_records(run, records: list) -> dict:
    """Images from JSON: each record an image as nested lists of [0, 1] values ((C, H, W) or
    (H, W)) or a base64 PNG, or {"image": ..., "label": k} for a conditional model."""
    images, labels = [], []
    for i, record in enumerate(records):
        if isinstance(record, dict):
            if "image" not in record:
                raise VaekitError(f"input {i}: an object needs \"image\" (and \"label\" for a conditional model)")
            labels.append(record.get("label"))
            record = record["image"]
        images.append(png_pixels(record, run.vae.x_shape, i) if isinstance(record, str) else list_pixels(record, i))
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        raise VaekitError(f"the inputs hold images of different shapes {sorted(shapes)[:2]}")
    x = np.stack(images)
    if x.shape[1:] != run.vae.x_shape and x.reshape(len(x), -1).shape[1] == int(np.prod(run.vae.x_shape)):
        x = x.reshape(len(x), *run.vae.x_shape)
    if run.vae.conditional:
        if len(labels) != len(images) or any(type(v) is not int for v in labels):
            raise VaekitError("a conditional model needs {\"image\": ..., \"label\": k} inputs, each with an integer label")
        return {"images": x, "labels": labels}
    return {"images": x}


def list_pixels(record, i: int) -> np.ndarray:
    try:
        x = np.asarray(record, dtype=np.float32)
    except (TypeError, ValueError):
        raise VaekitError(f"input {i}: not an image (nested lists of numbers of one shape)") from None
    if x.ndim not in (2, 3) or not np.isfinite(x).all() or x.min(initial=0) < 0 or x.max(initial=0) > 1:
        raise VaekitError(f"input {i}: an image is (H, W) or (C, H, W) finite values in [0, 1], got shape {x.shape}")
    return x if x.ndim == 3 else x[None]


def png_pixels(text: str, shape: tuple, i: int) -> np.ndarray:
    """A base64 PNG (a data: URI prefix allowed) as (C, H, W) in [0, 1], C as the model's."""
    import base64
    import binascii
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        raw = base64.b64decode(text.split(",", 1)[-1] if text.startswith("data:") else text, validate=True)
        image = Image.open(io.BytesIO(raw))
        image = image.convert("L" if shape[0] == 1 else "RGB")
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError):
        raise VaekitError(f"input {i}: a string input must be a base64 PNG") from None
    x = np.asarray(image, dtype=np.float32) / 255.0
    return x[None] if x.ndim == 2 else x.transpose(2, 0, 1)


def to_records(run, result, form: str) -> list:
    """Images (..., C, H, W) as nested lists, or base64 PNGs with form "png"; the leading
    dimensions (pairs, steps) stay as lists of lists."""
    x = result.numpy() if isinstance(result, torch.Tensor) else np.asarray(result)
    if form not in ("list", "png"):
        raise VaekitError(f"format must be list or png, got {form!r}")
    lead = x.shape[:-3]
    flat = x.reshape(-1, *x.shape[-3:])
    images = [png_text(im) for im in flat] if form == "png" else np.round(flat, 4).tolist()
    for size in reversed(lead[1:]):
        images = [images[i : i + size] for i in range(0, len(images), size)]
    return images


def png_text(image: np.ndarray) -> str:
    import base64
    import io

    from PIL import Image

    pixels = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    picture = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


@torch.no_grad()
def decoded(run, z: torch.Tensor, labels) -> torch.Tensor:
    vae = run.vae
    y = None
    if vae.conditional:
        labels = labels if labels is not None else [0] * len(z)
        if len(labels) != len(z):
            raise VaekitError(f"{len(labels)} labels for {len(z)} latent codes")
        y = torch.as_tensor(labels, dtype=torch.long)
    return vae.decode(z, y).mean


def save_epoch(run_dir, vae, z, epoch: int) -> None:
    save_grid(Path(run_dir) / "samples" / f"epoch_{epoch:03d}.png", vae.decode(z, class_cycle(vae, len(z))).mean)


def save_final(run_dir, vae, splits, num_samples: int) -> None:
    run_dir = Path(run_dir)
    save_grid(run_dir / "samples.png", vae.sample(num_samples, generator=torch.Generator().manual_seed(0)))
    x, y = (splits.test_x, splits.test_y) if len(splits.test_x) else (splits.train_x, splits.train_y)
    y = y[:32] if vae.conditional else None
    save_pairs(run_dir / "reconstructions.png", x[:32], vae.reconstruct(x[:32], y))


def posterior_sampler(run, num_components: int, seed: int, data_dir: str | None = None):
    """A Gaussian mixture over the posterior means of (up to 10,000) training examples."""
    splits = run.splits(data_dir)
    y = None if splits.train_y is None else splits.train_y[:10_000]
    mu, _ = explore.embed(run.vae, splits.train_x[:10_000], y=run.vae.labels_for(y))
    return explore.PosteriorSampler(num_components, seed=seed).fit(mu)


@torch.no_grad()
def sample(run, opts) -> torch.Tensor:
    """Decoder means of `num` draws (N, C, H, W): from the prior, or from a mixture fitted to
    training codes."""
    vae = run.vae
    if opts.label is not None and not vae.conditional:
        raise VaekitError("--label needs a conditional VAE (train with --num-classes)")
    y = torch.full((opts.num,), opts.label) if opts.label is not None else class_cycle(vae, opts.num)
    if opts.sampler == "posterior":
        z = posterior_sampler(run, opts.components, opts.seed, opts.data_dir).sample(opts.num, opts.temperature)
        return vae.decode(z, y).mean.detach()
    return vae.sample(opts.num, temperature=opts.temperature, generator=torch.Generator().manual_seed(opts.seed), y=y)


@torch.no_grad()
def reconstruct(run, opts) -> torch.Tensor:
    """Inputs beside their reconstructions: (N, 2, C, H, W)."""
    vae = run.vae
    x, y = run.inputs(opts.data, opts.data_dir)
    x, y = x[: opts.num], vae.labels_for(None if y is None else y[: opts.num])
    return torch.stack([x, vae.reconstruct(x, y)], dim=1)


@torch.no_grad()
def interpolate(run, opts) -> torch.Tensor:
    """Paths between the posterior means of random input pairs: (pairs, steps, C, H, W)."""
    x, y = run.inputs(opts.data, opts.data_dir)
    y = run.vae.labels_for(y)
    idx = explore.pair_indices(len(x), opts.pairs, opts.seed)
    ya, yb = (None, None) if y is None else (y[idx[::2]], y[idx[1::2]])
    return explore.interpolate(run.vae, x[idx[::2]], x[idx[1::2]], opts.steps, opts.spherical, ya, yb)


def write(run, command: str, result: torch.Tensor, opts) -> None:
    out = run.out_path(opts.out, OUTPUTS[command])
    if command == "reconstruct" and out.suffix != ".npy":
        save_pairs(out, result[:, 0], result[:, 1])
        print(f"wrote {out}")
    elif command == "interpolate":
        save_images(out, result.flatten(0, 1), nrow=opts.steps)  # (P*K, C, H, W)
    else:
        save_images(out, result)


def save_images(out: Path, x: torch.Tensor, nrow: int | None = None) -> None:
    """A .npy path gets the array, anything else a PNG grid."""
    if out.suffix == ".npy":
        files.write_npy(out, x.numpy())
    else:
        save_grid(out, x, nrow)
    print(f"wrote {out}")


@torch.no_grad()
def manifold(run, opts) -> None:
    if opts.label is not None and not run.vae.conditional:
        raise VaekitError("--label needs a conditional VAE (train with --num-classes)")
    x = explore.manifold(run.vae, opts.grid, opts.span, tuple(opts.dims), label=opts.label or 0)
    save_images(run.out_path(opts.out, "manifold.png"), x, nrow=opts.grid)


def frechet(run, opts, x, y) -> dict:
    from . import quality

    splits = run.splits(opts.data_dir)
    net = quality.feature_net_for(run.run_dir, splits.train_x, splits.train_y)
    n = min(len(x), 10_000)
    samples = run.vae.sample(n, generator=torch.Generator().manual_seed(opts.seed),
                             y=None if y is None or not run.vae.conditional else y[:n])
    return {"frechet_classifier_distance": quality.frechet_distance(
                quality.feature_stats(net, samples), quality.feature_stats(net, x[:n])),
            "frechet_feature_net": quality.RECIPE}


@torch.no_grad()
def report_sections(run, splits) -> list[str]:
    """Samples from the prior and the posterior sampler, reconstructions, interpolations, the
    decoded manifold and the latent scatter of an image run."""
    vae, test_x, test_y = run.vae, splits.test_x, splits.test_y
    g = torch.Generator().manual_seed(0)
    train_y = None if splits.train_y is None else splits.train_y[:10_000]
    mu, _ = explore.embed(vae, splits.train_x[:10_000], y=vae.labels_for(train_y))
    sampler = explore.PosteriorSampler(10).fit(mu)
    labels = torch.arange(64) % vae.cfg.num_classes if vae.conditional else None
    sections = ["<h2>Samples</h2>" + figure(grid_uri(vae.sample(64, generator=g)), f"64 draws z ~ p(z) ({run.cfg.model.prior} prior)")
                + figure(grid_uri(vae.decode(sampler.sample(64), labels).mean),
                         "64 draws from a 10-component Gaussian mixture fitted to training posterior means")]
    x = test_x[:16]
    ty = vae.labels_for(test_y)
    pairs = torch.stack([x, vae.reconstruct(x, None if ty is None else ty[:16])], 1).flatten(0, 1)
    a, b = test_x[16:22], test_x[22:28]
    ya, yb = (None, None) if ty is None else (ty[16:22], ty[22:28])
    sections.append(
        "<h2>Reconstructions and interpolations</h2>"
        + figure(grid_uri(pairs, nrow=8), "Test inputs, each followed by its reconstruction (decoder mean at the posterior mean)")
        + figure(grid_uri(explore.interpolate(vae, a, b, 10, False, ya, yb).flatten(0, 1), nrow=10), "Linear paths between posterior means of test pairs")
        + figure(grid_uri(explore.interpolate(vae, a, b, 10, True, ya, yb).flatten(0, 1), nrow=10), "Spherical paths (slerp)"))
    sections.append("<h2>Latent space</h2>"
                    + figure(grid_uri(explore.manifold(vae, 15, 3.0), nrow=15),
                             "Decoded grid over latent axes 0 and 1 in [-3, 3]^2, other axes at 0")
                    + latent_scatter(run, test_x, test_y, "Encoded test data coloured by label"))
    return sections

"""File formats and atomic I/O: files written whole or not at all (temporary file, fsync,
rename), JSON and .npy, safetensors whose header records the SHA-256 of their tensor bytes, and
the lock a training process holds on its run directory. Nothing here knows what a run is.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .errors import VaekitError


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`. The file gets
    the permissions any new file gets (0666 less the umask), not mkstemp's owner-only 0600."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise VaekitError(f"{path}: cannot write ({e.strerror})") from None
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        kept = "; the previous version is intact" if path.exists() else ""
        raise VaekitError(f"{path}: cannot write ({e.strerror or e}){kept}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_npy(path: Path, array) -> None:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write(path, buf.getvalue())


def write_json(path: Path, obj) -> None:
    atomic_write(path, (json.dumps(obj, indent=2) + "\n").encode())


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise VaekitError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VaekitError(f"{path}: not valid JSON ({e})") from None


def dump_safetensors(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> bytes:
    """safetensors bytes whose header records the SHA-256 of the tensor bytes."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    plain = st_save(tensors, meta)
    body = plain[8 + int.from_bytes(plain[:8], "little"):]  # the layout does not depend on metadata
    return st_save(tensors, {**meta, "sha256": hashlib.sha256(body).hexdigest()})


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a vaekit safetensors file, after checking its integrity hash."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise VaekitError(f"{path}: file not found") from None
    except OSError as e:
        raise VaekitError(f"{path}: cannot read ({e.strerror})") from None
    try:
        n = int.from_bytes(raw[:8], "little")
        if len(raw) < 8 or n > len(raw) - 8:
            raise ValueError(f"header length {n} exceeds the file's {len(raw)} bytes")
        meta = json.loads(raw[8 : 8 + n]).get("__metadata__", {}) or {}
        tensors = st_load(raw)
    except (SafetensorError, ValueError, UnicodeDecodeError, AttributeError) as e:
        raise VaekitError(f"{path}: not a valid safetensors file ({e})") from None
    if meta.get("sha256") != hashlib.sha256(raw[8 + n:]).hexdigest():
        raise VaekitError(f"{path}: integrity check failed (weights do not match the recorded SHA-256)")
    return tensors, meta


@contextmanager
def lock_run(run_dir: Path, create: bool, active: bool = True):
    """Hold RUN/.lock for the life of a training process; a second process is refused.
    The kernel drops the lock when the process dies, even by SIGKILL."""
    if not active:
        yield
        return
    run_dir = Path(run_dir)
    if create:
        if run_dir.exists() and not run_dir.is_dir():
            raise VaekitError(f"{run_dir}: exists and is not a directory")
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise VaekitError(f"{run_dir}: cannot create run directory ({e.strerror})") from None
    elif not run_dir.is_dir():
        raise VaekitError(f"{run_dir}: run directory not found")
    fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o666)  # less the umask, as any new file
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise VaekitError(f"{run_dir}: in use by another vaekit process (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock

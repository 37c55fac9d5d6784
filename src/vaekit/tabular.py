"""Reading tables: CSV or TSV with a header row (gzipped or not) and Parquet, strictly. Any kind
whose users hold their data as a table reads it here (table rows, interactions, SMILES columns).

CSV cells are read as text, so a cell comes back with its exact spelling (types are inferred
later, in columns.py); pyarrow parses them (fast, strict about ragged rows and invalid UTF-8).
Arrow's worker threads stay off: its thread pool can abort the process at interpreter exit
(apache/arrow#34314; seen here once in a test's subprocess). Every problem is one VaekitError
naming the file and the row or column.
"""

from __future__ import annotations

import csv
import gzip
import zlib
import io
from pathlib import Path

import pandas as pd

from .errors import VaekitError

CSV_SUFFIXES = (".csv", ".tsv", ".tab")
PARQUET_SUFFIXES = (".parquet", ".pq")


def is_table_path(name: str) -> bool:
    lower = name.lower()
    return lower.removesuffix(".gz").endswith(CSV_SUFFIXES) or lower.endswith(PARQUET_SUFFIXES)

def read_table(path: str | Path) -> pd.DataFrame:
    """A file's table: text columns (object dtype, exact spelling) from CSV/TSV, typed columns
    from Parquet. Refuses empty, header-only, ragged, non-UTF-8 and duplicate-column files."""
    path = Path(path)
    if not path.exists():
        raise VaekitError(f"{path}: file not found")
    if path.is_dir():
        raise VaekitError(f"{path}: is a folder, not a table file")
    if path.name.lower().endswith(PARQUET_SUFFIXES):
        frame = read_parquet(path)
    else:
        frame = read_csv(path)
    if len(frame) == 0:
        raise VaekitError(f"{path}: no data rows (only a header)")
    return frame


def read_parquet(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path, use_threads=False)
    except Exception as e:  # pyarrow raises many types for a damaged file
        raise VaekitError(f"{path}: not a readable Parquet file ({type(e).__name__}: {str(e)[:120]})") from None
    check_names([str(c) for c in frame.columns], path)
    frame.columns = [str(c) for c in frame.columns]
    return frame


def open_text(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise VaekitError(f"{path}: corrupt gzip data ({e})") from None


def header_of(raw: bytes, path: Path) -> tuple[list[str], str]:
    """The header row's names and the delimiter: a tab for .tsv/.tab files and headers with
    tabs but no commas, ';' for headers with semicolons but no commas, else ','."""
    first = raw.split(b"\n", 1)[0].rstrip(b"\r")
    if not first.strip():
        raise VaekitError(f"{path}: empty file (expected a header row)")
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise VaekitError(f"{path}: not UTF-8 text (in the header row)") from None
    suffix = path.name.lower().removesuffix(".gz")
    if suffix.endswith((".tsv", ".tab")) or ("\t" in text and "," not in text):
        delimiter = "\t"
    elif ";" in text and "," not in text:
        delimiter = ";"
    else:
        delimiter = ","
    names = next(csv.reader([text], delimiter=delimiter))
    check_names(names, path)
    return [n.strip() for n in names], delimiter


def check_names(names: list[str], path: Path) -> None:
    stripped = [n.strip() for n in names]
    if any(not n for n in stripped):
        raise VaekitError(f"{path}: column {stripped.index('') + 1} of the header has no name")
    seen = set()
    for n in stripped:
        if n in seen:
            raise VaekitError(f"{path}: duplicate column name {n!r}")
        seen.add(n)


def read_csv(path: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.csv as pc

    raw = open_text(path)
    names, delimiter = header_of(raw, path)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise VaekitError(f"{path}: not UTF-8 text (line {line})") from None
    bad = {}

    def on_bad_row(row):
        bad.setdefault("row", row)
        return "error"

    try:
        table = pc.read_csv(
            io.BytesIO(raw),
            read_options=pc.ReadOptions(column_names=names, skip_rows=1, use_threads=False),
            parse_options=pc.ParseOptions(delimiter=delimiter, invalid_row_handler=on_bad_row),
            convert_options=pc.ConvertOptions(column_types={n: pa.string() for n in names}, null_values=[],
                                              strings_can_be_null=False, quoted_strings_can_be_null=False))
    except pa.ArrowInvalid as e:
        if "row" in bad:
            row = bad["row"]
            line = line_number(raw, row.text)
            where = f"line {line}" if line else "a row"
            raise VaekitError(f"{path}: {where} has {row.actual_columns} fields, the header has "
                              f"{row.expected_columns}: {row.text[:60]!r}") from None
        message = str(e)
        if "UTF8" in message:
            column = message.split("column #", 1)[-1].split(":", 1)[0]
            name = names[int(column)] if column.isdigit() and int(column) < len(names) else "?"
            raise VaekitError(f"{path}: not UTF-8 text (in column {name!r})") from None
        if "Empty CSV file" in message:
            raise VaekitError(f"{path}: no data rows (only a header)") from None
        raise VaekitError(f"{path}: not a readable CSV file ({message.splitlines()[0][:120]})") from None
    frame = table.to_pandas(use_threads=False)
    frame.columns = names
    # Cells are read as written; only the surrounding spaces of "a, b" style files are dropped.
    return frame.apply(lambda col: col.str.strip()) if len(frame) else frame


def line_number(raw: bytes, text: str) -> int | None:
    """The 1-based line of the first line reading `text` (for error messages only)."""
    target = text.encode()
    for i, line in enumerate(raw.split(b"\n"), start=1):
        if line.rstrip(b"\r") == target:
            return i
    return None


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """The frame as CSV (or TSV for a .tsv name), atomically; missing cells as the frame holds them."""
    from .files import atomic_write

    sep = "\t" if str(path).lower().removesuffix(".gz").endswith((".tsv", ".tab")) else ","
    data = frame.to_csv(index=False, sep=sep, lineterminator="\n").encode()
    if str(path).lower().endswith(".gz"):
        data = gzip.compress(data, compresslevel=6)
    atomic_write(Path(path), data)

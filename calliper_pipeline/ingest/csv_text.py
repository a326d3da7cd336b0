"""CSV files (plain or gzip) read as text: decoding, delimiter, ragged rows.

:func:`read_csv_text` is the CSV reader of :func:`.readers.read_snapshot`. It reads the file
with Python's :mod:`csv` module rather than pandas so that a row whose field count differs
from the header's is kept, marked ``ragged row`` (:mod:`.markers`), instead of refusing the
file, and so that an undecodable byte or a wrong delimiter is named precisely.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from calliper_pipeline.errors import ConfigError, SnapshotFormatError
from calliper_pipeline.ingest.markers import (
    COL_READ_RAW,
    COL_READ_REASON,
    REASON_RAGGED_ROW,
)

#: Delimiters recognised in a one-column header, with how to write them in a city file.
_OTHER_DELIMITERS = ((";", ";"), ("\t", "\\t"), ("|", "|"))


def file_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when they start with the gzip magic number."""
    try:
        data = path.read_bytes()
        return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    except (OSError, EOFError, zlib.error) as exc:
        raise SnapshotFormatError(str(path), f"unreadable file: {exc}") from exc


def decode(path: Path, data: bytes, encoding: str | None) -> str:
    """The file's text; an undecodable byte names its offset and line and what to declare.

    ``encoding`` None is UTF-8 (a byte-order mark dropped).

    Raises:
        SnapshotFormatError: UTF-16 without a declared encoding, or an undecodable byte.
        ConfigError: ``encoding`` is not a codec Python knows.
    """
    if encoding is None and data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise SnapshotFormatError(
            str(path),
            'the file is UTF-16 (byte-order mark): add encoding = "utf-16" to its source entry',
        )
    try:
        return data.decode(encoding or "utf-8-sig")
    except LookupError as exc:
        raise ConfigError(f"{path}: unknown encoding {encoding!r} in the city file") from exc
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        suggest = '"cp1252" (or "latin-1")' if _decodes(data, "cp1252") else '"latin-1"'
        raise SnapshotFormatError(
            str(path),
            f"not {encoding or 'UTF-8'} text: byte 0x{data[exc.start]:02x} at byte offset "
            f"{exc.start} (line {line}); if the file is in another encoding, add "
            f"encoding = {suggest} to its source entry in the city file",
        ) from exc


def _decodes(data: bytes, codec: str) -> bool:
    try:
        data.decode(codec)
    except UnicodeDecodeError:
        return False
    return True


def _unique_names(header: list[str]) -> list[str]:
    """Header names, a repeated one suffixed ``.1``, ``.2``... (as pandas does)."""
    seen: dict[str, int] = {}
    out = []
    for name in header:
        n = seen.get(name, 0)
        seen[name] = n + 1
        out.append(name if n == 0 else f"{name}.{n}")
    return out


def _check_delimiter(path: Path, header: list[str], delimiter: str) -> None:
    """A one-column header holding another usual delimiter: say which and how to declare it."""
    if len(header) != 1:
        return
    for other, shown in _OTHER_DELIMITERS:
        if other != delimiter and other in header[0]:
            raise SnapshotFormatError(
                str(path),
                f"the header is one column {header[0][:60]!r}: the file looks "
                f"'{shown}'-separated; add delimiter = \"{shown}\" to its source entry in the "
                "city file",
            )


def read_csv_text(path: Path, encoding: str | None, delimiter: str) -> pd.DataFrame:
    """Every data row of a CSV file as text (empty cells missing), ragged rows marked.

    Blank lines are skipped (not rows). A row with more or fewer fields than the header keeps
    its place with empty columns, :data:`.markers.COL_READ_REASON` ``ragged row`` and the raw
    fields as JSON in :data:`.markers.COL_READ_RAW` (with its line, which differs from the row
    when a quoted field spans lines).

    Raises:
        SnapshotFormatError: undecodable, no header, a header that looks like another
            delimiter's, or a CSV error (named by line).
    """
    text = decode(path, file_bytes(path), encoding)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next((r for r in reader if r), None)
        if header is None:
            raise SnapshotFormatError(str(path), "empty file (no header row)")
        _check_delimiter(path, header, delimiter)
        rows = [r for r in reader if r]
    except csv.Error as exc:
        raise SnapshotFormatError(
            str(path), f"unparseable CSV at line {reader.line_num}: {exc}"
        ) from exc
    width = len(header)
    widths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    ragged = np.flatnonzero(widths != width)
    raw_json = {}
    if len(ragged):
        lines = _record_lines(text, delimiter)
        for i in ragged:
            raw = {"line": lines[i], "fields": len(rows[i]), "expected": width}
            raw_json[int(i)] = json.dumps({**raw, "values": rows[i]}, ensure_ascii=False)
            rows[i] = [""] * width
    df = pd.DataFrame(rows, columns=_unique_names(header), dtype=object)
    cells = df.to_numpy(dtype=object)
    empty = cells == ""
    if empty.any():
        cells[empty] = None
        df = pd.DataFrame(cells, columns=df.columns, dtype=object)
    if raw_json:
        reason = np.full(len(df), None, dtype=object)
        raw_text = np.full(len(df), None, dtype=object)
        reason[ragged] = REASON_RAGGED_ROW
        raw_text[ragged] = list(raw_json.values())
        df[COL_READ_REASON] = reason
        df[COL_READ_RAW] = raw_text
    return df


def _record_lines(text: str, delimiter: str) -> list[int]:
    """The file line on which each non-blank data record ends (a second pass, for messages)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    lines = [reader.line_num for r in reader if r]
    return lines[1:]  # the header's first

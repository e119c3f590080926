"""Input of a bulk-scoring job: which files, how they split into shards, and reading one shard's records.

A shard is a fixed slice of one input file (a byte range of whole lines or CSV records, or a row range of a
Parquet file) planned once by the driver; its output is one part file, so a finished part is never scored
again. Reading never stops at a bad record: it comes back with a reading error (not valid JSON, not an
object, a CSV record with the wrong number of fields, not valid UTF-8) for the output's error column.

Paths are local paths or URIs that pyarrow.fs understands (s3://, gs://, hdfs://): on a Ray cluster every
worker must reach them. No Ray here: the driver plans, the actors read.
"""
from __future__ import annotations

import csv
import glob
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Iterator

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

FORMATS = ("jsonl", "csv", "parquet")
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet",
            ".pq": "parquet"}
CHUNK_BYTES = 4 << 20
# A text over the engine's character limit is one bad row (its error says so); never a csv.Error that would
# misalign the records after it.
csv.field_size_limit(1 << 30)


class InputError(Exception):
    """The job's input cannot be scored at all (no such file, unknown format, no text column)."""


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) of a local path or a URI; local paths become absolute (Ray workers have another cwd)."""
    if "://" in uri:
        fs, path = pafs.FileSystem.from_uri(uri)
        return fs, path
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def format_of(path: str, forced: str | None = None) -> str:
    """The input format named by `forced`, else by the file's suffix."""
    if forced:
        if forced not in FORMATS:
            raise InputError(f"unknown input format {forced!r}; use one of {', '.join(FORMATS)}")
        return forced
    suffix = os.path.splitext(path.removesuffix(".gz"))[1].lower()
    if suffix not in SUFFIXES:
        raise InputError(f"cannot tell the format of {path} from its suffix; name it with --format "
                         f"({', '.join(FORMATS)})")
    return SUFFIXES[suffix]


def expand(inputs: list[str], forced_format: str | None = None) -> list[str]:
    """Every input file, in a stable order: files as given, a folder's files of a known suffix (sorted), local
    glob patterns (sorted)."""
    files: list[str] = []
    for item in inputs:
        if "://" not in item and any(ch in item for ch in "*?["):
            matched = sorted(glob.glob(item))
            if not matched:
                raise InputError(f"no file matches {item}")
            files.extend(os.path.abspath(m) for m in matched)
            continue
        fs, path = filesystem(item)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise InputError(f"no such input: {item}")
        if info.type == pafs.FileType.Directory:
            found = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(path, recursive=False))
                           if i.type == pafs.FileType.File and not os.path.basename(i.path).startswith((".", "_"))
                           and (forced_format or os.path.splitext(i.path)[1].lower() in SUFFIXES))
            if not found:
                raise InputError(f"folder {item} holds no .jsonl, .csv or .parquet file")
            files.extend(_same_scheme(item, p) for p in found)
        else:
            files.append(item if "://" in item else path)
    return files


def _same_scheme(original: str, path: str) -> str:
    """A path found under `original` written as `original` was (URI or local)."""
    if "://" in original:
        scheme = original.split("://", 1)[0]
        return f"{scheme}://{path}"
    return path


@dataclass(frozen=True)
class Shard:
    """One slice of one input file: the unit of work and of output (part number `index`)."""

    index: int
    path: str
    format: str
    start: int  # byte offset of the first record (jsonl, csv) or first row (parquet)
    end: int  # byte offset past the last record, or the row past the last one
    first_row: int  # job-wide number of the first record
    rows: int  # records in the shard (jsonl: lines, blank ones too)
    header: tuple[str, ...] = field(default=())  # csv: the file's column names

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "Shard":
        data = json.loads(text)
        data["header"] = tuple(data.get("header", ()))
        return cls(**data)


@dataclass
class Records:
    """The records of one shard, column by column; `errors[i]` is set when record i could not be read."""

    rows: list[int] = field(default_factory=list)
    ids: list = field(default_factory=list)
    texts: list = field(default_factory=list)
    errors: list = field(default_factory=list)

    def add(self, row: int, id_value, text, error: str | None = None) -> None:
        self.rows.append(row)
        self.ids.append(id_value)
        self.texts.append(text)
        self.errors.append(error)

    def __len__(self) -> int:
        return len(self.rows)


# -- planning ------------------------------------------------------------------------------------------------

def plan(files: list[str], block_rows: int, text_column: str, id_column: str,
         forced_format: str | None = None) -> tuple[list[Shard], pa.DataType]:
    """Shards of `block_rows` records each over every file (a file's last shard may be shorter), and the Arrow
    type the output's id column will have (the Parquet column's own type, else string)."""
    if block_rows < 1:
        raise InputError("block_rows must be at least 1")
    shards: list[Shard] = []
    id_type: pa.DataType | None = None
    row = 0
    for path in files:
        fmt = format_of(path, forced_format)
        fs, local = filesystem(path)
        if fmt == "parquet":
            pieces, file_id_type = _plan_parquet(fs, local, path, block_rows, text_column, id_column)
            if file_id_type is not None:
                if id_type is not None and id_type != file_id_type:
                    raise InputError(f"{path}: column {id_column!r} is {file_id_type}, another input's is {id_type}")
                id_type = file_id_type
        elif fmt == "csv":
            pieces = _plan_csv(fs, local, path, block_rows, text_column)
        else:
            pieces = _plan_lines(fs, local, block_rows)
        for start, end, count, header in pieces:
            shards.append(Shard(len(shards), path, fmt, start, end, row, count, header))
            row += count
    return shards, (id_type if id_type is not None else pa.string())


def _plan_lines(fs: pafs.FileSystem, path: str, block_rows: int) -> list[tuple[int, int, int, tuple]]:
    """Byte ranges of `block_rows` lines each (a last line without a newline counts)."""
    pieces = []
    start = offset = count = 0
    last = b"\n"
    with fs.open_input_stream(path) as f:
        while chunk := f.read(CHUNK_BYTES):
            pos = 0
            while True:
                need = block_rows - count
                found = chunk.count(b"\n", pos)
                if found < need:
                    count += found
                    break
                for _ in range(need):
                    pos = chunk.index(b"\n", pos) + 1
                pieces.append((start, offset + pos, block_rows, ()))
                start, count = offset + pos, 0
            offset += len(chunk)
            last = chunk[-1:]
    if offset > start:
        pieces.append((start, offset, count + (last != b"\n"), ()))
    return pieces


def iter_lines(fs: pafs.FileSystem, path: str, start: int, end: int | None) -> Iterator[bytes]:
    """The lines (newline kept) of the byte range [start, end) of a file; planning and reading split alike."""
    with fs.open_input_file(path) as f:
        f.seek(start)
        remaining = None if end is None else end - start
        carry = b""
        while remaining is None or remaining > 0:
            chunk = f.read(CHUNK_BYTES if remaining is None else min(CHUNK_BYTES, remaining))
            if not chunk:
                break
            if remaining is not None:
                remaining -= len(chunk)
            lines = (carry + chunk).split(b"\n")
            carry = lines.pop()
            for line in lines:
                yield line + b"\n"
        if carry:
            yield carry


class _Decoded:
    """Lines of a byte range decoded for the csv module (undecodable bytes kept as surrogates, reported per
    record), with the byte offset of the next line."""

    def __init__(self, lines: Iterator[bytes], offset: int):
        self.lines = lines
        self.offset = offset

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = next(self.lines)
        first = self.offset == 0
        self.offset += len(line)
        if first and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]  # a UTF-8 byte-order mark
        return line.decode("utf-8", "surrogateescape")


def _csv_records(reader) -> Iterator[tuple[list[str] | None, str | None]]:
    """(fields, None) per record, or (None, error) for a record the csv module refuses; never raises."""
    while True:
        try:
            yield next(reader), None
        except StopIteration:
            return
        except csv.Error as error:
            yield None, f"not a valid CSV record: {error}"


def _plan_csv(fs, path: str, display: str, block_rows: int, text_column: str) -> list[tuple[int, int, int, tuple]]:
    """Byte ranges of `block_rows` CSV records each (quoted newlines respected), after the header."""
    lines = _Decoded(iter_lines(fs, path, 0, None), 0)
    reader = csv.reader(lines)
    try:
        header = tuple(next(reader))
    except StopIteration:
        return []
    except csv.Error as error:
        raise InputError(f"{display}: cannot read the CSV header: {error}") from None
    if text_column not in header:
        raise InputError(f"{display} has no column {text_column!r} (columns: {', '.join(header)}); "
                         "name the text column with --text-column")
    pieces = []
    start, count = lines.offset, 0
    for _record in _csv_records(reader):
        count += 1
        if count == block_rows:
            pieces.append((start, lines.offset, count, header))
            start, count = lines.offset, 0
    if count:
        pieces.append((start, lines.offset, count, header))
    return pieces


def _plan_parquet(fs, path: str, display: str, block_rows: int, text_column: str,
                  id_column: str) -> tuple[list[tuple[int, int, int, tuple]], pa.DataType | None]:
    """Row ranges of `block_rows` rows each; the id column's type (None when the file has none)."""
    with fs.open_input_file(path) as f:
        schema = pq.ParquetFile(f).schema_arrow
        rows = pq.ParquetFile(f).metadata.num_rows
    if text_column not in schema.names:
        raise InputError(f"{display} has no column {text_column!r} (columns: {', '.join(schema.names)}); "
                         "name the text column with --text-column")
    text_type = schema.field(text_column).type
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)):
        raise InputError(f"{display}: column {text_column!r} is {text_type}, not a string column")
    id_type = schema.field(id_column).type if id_column in schema.names else None
    pieces = [(s, min(s + block_rows, rows), min(block_rows, rows - s), ()) for s in range(0, rows, block_rows)]
    return pieces, id_type


# -- reading -------------------------------------------------------------------------------------------------

def read_shard(shard: Shard, text_column: str, id_column: str) -> Records:
    """Every record of a shard, bad ones with their reading error; blank lines (JSONL) and empty records (CSV)
    are no records and produce no output row."""
    fs, path = filesystem(shard.path)
    if shard.format == "parquet":
        return _read_parquet(fs, path, shard, text_column, id_column)
    if shard.format == "csv":
        return _read_csv(fs, path, shard, text_column, id_column)
    return _read_jsonl(fs, path, shard, text_column, id_column)


def json_id(value):
    """An id from JSON or CSV as the output's string id column holds it (a JSON string as it is, any other
    JSON value as its JSON text); None stays None."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _read_jsonl(fs, path: str, shard: Shard, text_column: str, id_column: str) -> Records:
    out = Records()
    for i, line in enumerate(iter_lines(fs, path, shard.start, shard.end)):
        row = shard.first_row + i
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except UnicodeDecodeError:
            out.add(row, None, None, "the line is not valid UTF-8")
            continue
        except ValueError as error:
            out.add(row, None, None, f"the line is not valid JSON: {error}")
            continue
        if not isinstance(obj, dict):
            out.add(row, None, None, f"the line is a JSON {type(obj).__name__}, not an object")
            continue
        if text_column not in obj:
            out.add(row, json_id(obj.get(id_column)), None, f"the record has no {text_column!r} field")
            continue
        out.add(row, json_id(obj.get(id_column)), obj[text_column])
    return out


def _read_csv(fs, path: str, shard: Shard, text_column: str, id_column: str) -> Records:
    out = Records()
    header = shard.header
    text_at = header.index(text_column)
    id_at = header.index(id_column) if id_column in header else None
    reader = csv.reader(_Decoded(iter_lines(fs, path, shard.start, shard.end), shard.start))
    for i, (fields, error) in enumerate(_csv_records(reader)):
        row = shard.first_row + i
        if error is not None:
            out.add(row, None, None, error)
            continue
        if not fields:
            continue
        id_value = fields[id_at] if id_at is not None and id_at < len(fields) else None
        if len(fields) != len(header):
            out.add(row, id_value, None, f"the CSV record has {len(fields)} fields; the header has {len(header)}")
            continue
        out.add(row, id_value, fields[text_at])
    return out


def _read_parquet(fs, path: str, shard: Shard, text_column: str, id_column: str) -> Records:
    with fs.open_input_file(path) as f:
        pf = pq.ParquetFile(f)
        columns = [text_column] + ([id_column] if id_column in pf.schema_arrow.names else [])
        # the row groups that overlap [start, end)
        groups, first, seen = [], None, 0
        for g in range(pf.metadata.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            if seen + n > shard.start and seen < shard.end:
                groups.append(g)
                first = seen if first is None else first
            seen += n
        table = pf.read_row_groups(groups, columns=columns) if groups else None
    out = Records()
    if table is None:
        return out
    table = table.slice(shard.start - first, shard.end - shard.start)
    texts = table.column(text_column).to_pylist()
    ids = table.column(id_column).to_pylist() if id_column in table.column_names else [None] * len(texts)
    for i, (text, id_value) in enumerate(zip(texts, ids)):
        out.add(shard.first_row + i, id_value, text)
    return out


def fingerprint(path: str) -> dict:
    """What identifies an input file for resuming: its path, size and the hash of its first and last MiB."""
    import hashlib
    fs, local = filesystem(path)
    size = fs.get_file_info(local).size
    digest = hashlib.sha256()
    with fs.open_input_file(local) as f:
        digest.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(size - (1 << 20))
            digest.update(f.read(1 << 20))
    return {"path": path, "size": size, "sha256_head_tail": digest.hexdigest()}

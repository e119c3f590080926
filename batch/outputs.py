"""Output of a bulk-scoring job: the columns, one part file per shard written atomically, the job manifest.

A part appears under its final name only once it is complete (written under a temporary name, then renamed),
so after a crash every part file present is whole and a rerun scores only the shards without one.
"""
from __future__ import annotations

import json
import os
import re
import uuid

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .inputs import filesystem

OUTPUT_FORMATS = ("parquet", "jsonl")
MANIFEST = "_senti_batch.json"
SUCCESS = "_SUCCESS"
_PART = re.compile(r"^part-(\d{6})\.(parquet|jsonl)$")
_TEMP = re.compile(r"^\.part-\d{6}\..*\.tmp$")

LABEL_SCORE = pa.struct([("label", pa.string()), ("score", pa.float64())])


def schema(task: str, id_column: str, id_type: pa.DataType) -> pa.Schema:
    """The output columns: the input's id, the job-wide row number, the API's fields for the task (Prediction
    or ZeroShotResult, proto3 JSON names), and the error of a row that was not scored."""
    if task == "sentiment":
        fields = [("label", pa.string()), ("score", pa.float64()), ("scores", pa.list_(LABEL_SCORE)),
                  ("polarity", pa.string()), ("truncated", pa.bool_()), ("tokens", pa.int64())]
    else:
        fields = [("labels", pa.list_(LABEL_SCORE)), ("truncated", pa.bool_())]
    return pa.schema([(id_column, id_type), ("row", pa.int64()), *fields,
                      ("error", pa.string()), ("error_code", pa.string())])


def part_name(index: int, fmt: str) -> str:
    return f"part-{index:06d}.{fmt}"


class OutputDir:
    """The job's output folder (a local path or a URI)."""

    def __init__(self, uri: str):
        self.uri = uri
        self.fs, self.path = filesystem(uri)

    def join(self, name: str) -> str:
        return f"{self.path.rstrip('/')}/{name}"

    def ensure(self) -> None:
        self.fs.create_dir(self.path, recursive=True)

    def names(self) -> list[str]:
        info = self.fs.get_file_info(self.path)
        if info.type == pafs.FileType.NotFound:
            return []
        if info.type != pafs.FileType.Directory:
            raise FileExistsError(f"output {self.uri} exists and is not a folder")
        return [os.path.basename(i.path) for i in self.fs.get_file_info(pafs.FileSelector(self.path))]

    def finished(self, fmt: str) -> set[int]:
        """Part numbers whose file is present (complete, since parts appear only by rename)."""
        return {int(m.group(1)) for name in self.names() if (m := _PART.match(name)) and m.group(2) == fmt}

    def clear(self) -> None:
        """Removes every part, temporary part, manifest and success marker (nothing else)."""
        for name in self.names():
            if _PART.match(name) or _TEMP.match(name) or name in (MANIFEST, SUCCESS):
                self.fs.delete_file(self.join(name))

    def remove_temporaries(self) -> int:
        """Deletes the temporary files that a crashed run left; returns how many."""
        stale = [name for name in self.names() if _TEMP.match(name)]
        for name in stale:
            self.fs.delete_file(self.join(name))
        return len(stale)

    def read_json(self, name: str) -> dict | None:
        if self.fs.get_file_info(self.join(name)).type == pafs.FileType.NotFound:
            return None
        with self.fs.open_input_stream(self.join(name)) as f:
            return json.loads(f.read().decode("utf-8"))

    def write_json(self, name: str, value: dict) -> None:
        self._atomic(name, json.dumps(value, ensure_ascii=False, indent=1).encode("utf-8"))

    def write_part(self, index: int, fmt: str, table: pa.Table) -> str:
        """Writes one part under a temporary name, then renames it into place; returns its final path."""
        name = part_name(index, fmt)
        temp = self.join(f".{name}.{uuid.uuid4().hex}.tmp")
        try:
            if fmt == "parquet":
                with self.fs.open_output_stream(temp) as f:
                    pq.write_table(table, f, compression="zstd")
            else:
                with self.fs.open_output_stream(temp) as f:
                    f.write(jsonl_bytes(table))
            self.fs.move(temp, self.join(name))
        except BaseException:
            try:
                self.fs.delete_file(temp)
            except OSError:
                pass
            raise
        return self.join(name)

    def _atomic(self, name: str, data: bytes) -> None:
        temp = self.join(f".{name}.{uuid.uuid4().hex}.tmp")
        with self.fs.open_output_stream(temp) as f:
            f.write(data)
        self.fs.move(temp, self.join(name))


def jsonl_bytes(table: pa.Table) -> bytes:
    """One JSON object per row, UTF-8, Chinese kept as is."""
    lines = [json.dumps(row, ensure_ascii=False) for row in table.to_pylist()]
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


def read_output(uri: str) -> pa.Table:
    """Every part of a finished (or partial) output folder as one table, in row order."""
    out = OutputDir(uri)
    tables = []
    for name in sorted(out.names()):
        m = _PART.match(name)
        if not m:
            continue
        if m.group(2) == "parquet":
            with out.fs.open_input_file(out.join(name)) as f:
                tables.append(pq.read_table(f))
        else:
            with out.fs.open_input_stream(out.join(name)) as f:
                rows = [json.loads(line) for line in f.read().decode("utf-8").splitlines() if line]
            tables.append(pa.Table.from_pylist(rows))
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables, promote_options="default")

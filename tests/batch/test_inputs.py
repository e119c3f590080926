"""senti-batch's input side: shards cover every record exactly once at any block size, bad records come back
with a reading error instead of stopping anything, and the output part files appear only whole."""
import json

import pytest

from tests.batch.conftest import require

pa = require("pyarrow")
pq = require("pyarrow.parquet")

from senti.batch.inputs import InputError, Shard, expand, plan, read_shard  # noqa: E402
from senti.batch.outputs import OutputDir, read_output, schema  # noqa: E402


def records_of(shards):
    """(row, id, text, error) of every record of every shard, in order."""
    out = []
    for shard in shards:
        r = read_shard(Shard.from_json(shard.to_json()), "text", "id")  # through JSON, as actors get them
        out.extend(zip(r.rows, r.ids, r.texts, r.errors))
    return out


JSONL_LINES = [
    json.dumps({"id": 1, "text": "很好"}, ensure_ascii=False),
    json.dumps({"id": "b", "text": "物流很快\n第二行"}, ensure_ascii=False),
    "{not json",
    "",
    "[1, 2]",
    json.dumps({"id": 5}),
    json.dumps({"id": 6.5, "text": None}),
    json.dumps({"text": "没有编号"}, ensure_ascii=False),
]


@pytest.mark.parametrize("block_rows", [1, 2, 3, 7, 8, 100])
@pytest.mark.parametrize("trailing_newline", [True, False])
def test_jsonl_shards_cover_every_line_once(tmp_path, block_rows, trailing_newline):
    path = tmp_path / "in.jsonl"
    lines = [line.encode("utf-8") for line in JSONL_LINES] + [b'{"id": 8, "text": "\xff\xfe"}']
    path.write_bytes(b"\n".join(lines) + (b"\n" if trailing_newline else b""))
    shards, id_type = plan(expand([str(path)]), block_rows, "text", "id")
    assert id_type == pa.string()
    assert sum(s.rows for s in shards) == len(JSONL_LINES) + 1
    assert all(s.rows == block_rows for s in shards[:-1])
    got = records_of(shards)
    # the blank line (row 3) is no record; every other line is one, in order, with its job-wide row number
    assert [r[0] for r in got] == [0, 1, 2, 4, 5, 6, 7, 8]
    by_row = {r[0]: r for r in got}
    assert by_row[0][1:] == ("1", "很好", None)  # JSON ids are written as strings
    assert by_row[1][1:] == ("b", "物流很快\n第二行", None)
    assert "not valid JSON" in by_row[2][3]
    assert "not an object" in by_row[4][3]
    assert by_row[5][1] == "5" and "no 'text' field" in by_row[5][3]
    assert by_row[6][1:3] == ("6.5", None) and by_row[6][3] is None  # null text: the scorer's error, not reading's
    assert by_row[7][1:] == (None, "没有编号", None)
    assert "UTF-8" in by_row[8][3]


CSV_TEXT = (
    "\ufeffid,text,stars\r\n"
    "1,很好,5\r\n"
    '2,"带引号的,逗号",4\r\n'
    '3,"跨行的\n评论",3\r\n'
    "4,字段太多,1,extra\r\n"
    "\r\n"
    "5,,2\r\n"
    '6,"最后一条 ""引号""",1'
)


@pytest.mark.parametrize("block_rows", [1, 2, 3, 4, 50])
def test_csv_shards_respect_quoted_newlines(tmp_path, block_rows):
    path = tmp_path / "in.csv"
    path.write_text(CSV_TEXT, encoding="utf-8", newline="")
    shards, _ = plan(expand([str(path)]), block_rows, "text", "id")
    assert all(s.header == ("id", "text", "stars") for s in shards)  # the byte-order mark is not in the name
    got = records_of(shards)
    assert [r[0] for r in got] == [0, 1, 2, 3, 5, 6]  # the empty record (row 4) is none
    by_row = {r[0]: r for r in got}
    assert by_row[0][1:] == ("1", "很好", None)
    assert by_row[1][1:] == ("2", "带引号的,逗号", None)
    assert by_row[2][1:] == ("3", "跨行的\n评论", None)
    assert by_row[3][1] == "4" and "4 fields" in by_row[3][3]
    assert by_row[5][1:] == ("5", "", None)  # an empty text is the scorer's INVALID_ARGUMENT
    assert by_row[6][1:] == ("6", '最后一条 "引号"', None)


def test_csv_without_the_text_column_is_refused_before_anything_runs(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("id,comment\n1,好\n", encoding="utf-8")
    with pytest.raises(InputError, match="no column 'text'"):
        plan(expand([str(path)]), 10, "text", "id")
    [shard], _ = plan(expand([str(path)]), 10, "comment", "id")
    records = read_shard(shard, "comment", "id")
    assert (records.ids, records.texts) == (["1"], ["好"])


@pytest.mark.parametrize("block_rows", [1, 3, 4, 10])
def test_parquet_shards_span_row_groups_and_keep_the_id_type(tmp_path, block_rows):
    path = tmp_path / "in.parquet"
    table = pa.table({"id": pa.array(range(10, 20), pa.int64()),
                      "text": [f"评论{i}" if i != 4 else None for i in range(10)]})
    pq.write_table(table, path, row_group_size=3)
    shards, id_type = plan(expand([str(path)]), block_rows, "text", "id")
    assert id_type == pa.int64()
    got = records_of(shards)
    assert [r[0] for r in got] == list(range(10))
    assert [r[1] for r in got] == list(range(10, 20))
    assert [r[2] for r in got] == table.column("text").to_pylist()


def test_parquet_text_column_must_be_strings(tmp_path):
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": [1, 2]}), path)
    with pytest.raises(InputError, match="not a string column"):
        plan([str(path)], 10, "text", "id")


def test_a_folder_is_its_data_files_in_order_and_rows_number_across_files(tmp_path):
    (tmp_path / "b.jsonl").write_text('{"text": "二"}\n{"text": "三"}\n', encoding="utf-8")
    (tmp_path / "a.jsonl").write_text('{"text": "一"}\n', encoding="utf-8")
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / "notes.txt").write_text("not data")
    files = expand([str(tmp_path)])
    assert [f.rsplit("/", 1)[1] for f in files] == ["a.jsonl", "b.jsonl"]
    shards, _ = plan(files, 10, "text", "id")
    assert [(r[0], r[2]) for r in records_of(shards)] == [(0, "一"), (1, "二"), (2, "三")]
    with pytest.raises(InputError, match="no such input"):
        expand([str(tmp_path / "missing.jsonl")])
    with pytest.raises(InputError, match="--format"):
        plan([str(tmp_path / "notes.txt")], 10, "text", "id")


def test_parts_appear_whole_and_read_back_in_order(tmp_path):
    out = OutputDir(str(tmp_path / "out"))
    out.ensure()
    s = schema("zeroshot", "id", pa.string())
    for index in (1, 0):
        rows = {"id": [f"{index}"], "row": [index], "labels": [[{"label": "物流", "score": 1.0}]],
                "truncated": [False], "error": [None], "error_code": [None]}
        out.write_part(index, "parquet", pa.Table.from_pydict(rows, schema=s))
    (tmp_path / "out" / ".part-000002.parquet.0123.tmp").write_bytes(b"half a file")
    assert out.finished("parquet") == {0, 1}
    assert out.remove_temporaries() == 1
    table = read_output(str(tmp_path / "out"))
    assert table.column("row").to_pylist() == [0, 1]
    assert table.column("labels").to_pylist()[0] == [{"label": "物流", "score": 1.0}]

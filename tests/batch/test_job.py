"""senti-batch on a local Ray over the tiny bundle: both tasks, every input format, bad rows, and resuming after
an interrupted run (stopped after some blocks, and killed outright) without recomputing a finished block."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.batch.conftest import require
from tests.conftest import ROOT
from tests.tiny_bundles import TINY_NEGATIVE, TINY_POSITIVE

pa = require("pyarrow")
pq = require("pyarrow.parquet")

from senti.batch.cli import main as cli_main  # noqa: E402
from senti.batch.job import JobConfig, JobError, run_job  # noqa: E402
from senti.batch.outputs import MANIFEST, SUCCESS, read_output  # noqa: E402

pytestmark = pytest.mark.slow
PHRASES = TINY_POSITIVE + TINY_NEGATIVE
EXPECTED = {text: "positive" for text in TINY_POSITIVE} | {text: "negative" for text in TINY_NEGATIVE}
BAD = {7: "{not json", 13: json.dumps({"id": "e13", "text": "  "}), 21: json.dumps({"id": "m21"}),
       34: json.dumps({"id": "n34", "text": None})}


def write_jsonl(path, n=50, blank_at=(40,)):
    """n lines: fitted phrases with ids, the BAD lines at their positions, blank lines at blank_at."""
    lines = []
    for i in range(n):
        if i in BAD:
            lines.append(BAD[i])
        elif i in blank_at:
            lines.append("")
        else:
            lines.append(json.dumps({"id": f"c{i}", "text": PHRASES[i % len(PHRASES)]}, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def config(tiny_bundle, source, out, **overrides) -> JobConfig:
    # one text per forward pass: the tiny head's fitted labels then hold (see tests/tiny_bundles.py)
    values = dict(inputs=[str(source)], out=str(out), bundle=str(tiny_bundle), block_rows=8, max_batch_size=1,
                  progress=False, max_chars_per_text=2000)
    values.update(overrides)
    return JobConfig(**values)


def snapshot(folder):
    """(inode, mtime_ns, size) of every part file: a recomputed part would be a new file."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size) for p in folder.glob("part-*")}


def check_sentiment_output(out, n=50, blank_at=(40,)):
    table = read_output(str(out)).to_pydict()
    expected_rows = [i for i in range(n) if i not in blank_at]
    assert table["row"] == expected_rows  # every record exactly once, in input order
    for k, row in enumerate(table["row"]):
        if row in BAD:
            assert table["error_code"][k] == "INVALID_ARGUMENT" and table["label"][k] is None
        else:
            assert table["id"][k] == f"c{row}"
            assert table["error"][k] is None
            assert table["label"][k] == EXPECTED[PHRASES[row % len(PHRASES)]]
    assert [table["id"][table["row"].index(r)] for r in (7, 13, 21, 34)] == [None, "e13", "m21", "n34"]


def test_stopped_run_resumes_without_recomputing_finished_blocks(local_ray, tiny_bundle, tmp_path):
    source = write_jsonl(tmp_path / "comments.jsonl")
    out = tmp_path / "scored"
    first = run_job(config(tiny_bundle, source, out, max_blocks=3))
    assert (first.shards, first.scored, first.skipped, first.complete) == (7, 3, 0, False)
    assert sorted(p.name for p in out.glob("part-*")) == [f"part-00000{i}.parquet" for i in range(3)]
    assert not (out / SUCCESS).exists()
    kept = snapshot(out)
    (out / ".part-000004.parquet.0a1b2c.tmp").write_bytes(b"what a crash mid-write leaves")

    second = run_job(config(tiny_bundle, source, out))
    assert (second.scored, second.skipped, second.complete) == (4, 3, True)
    after = snapshot(out)
    assert {name: after[name] for name in kept} == kept  # the finished blocks were not written again
    assert len(after) == 7 and not list(out.glob(".*.tmp"))
    assert json.loads((out / SUCCESS).read_text())["rows"] == 50
    check_sentiment_output(out)

    third = run_job(config(tiny_bundle, source, out))  # nothing left: nothing runs
    assert (third.scored, third.skipped, third.complete) == (0, 7, True) and snapshot(out) == after


def test_another_job_on_the_same_output_is_refused_unless_overwritten(local_ray, tiny_bundle, tmp_path):
    source = write_jsonl(tmp_path / "comments.jsonl")
    out = tmp_path / "scored"
    run_job(config(tiny_bundle, source, out, max_blocks=1))
    with pytest.raises(JobError, match="differs in: labels, task"):
        run_job(config(tiny_bundle, source, out, task="zeroshot", labels=("物流", "质量")))
    source.write_text(source.read_text(encoding="utf-8") + json.dumps({"id": "new", "text": "很好"}) + "\n",
                      encoding="utf-8")
    with pytest.raises(JobError, match="differs in: inputs"):
        run_job(config(tiny_bundle, source, out))
    done = run_job(config(tiny_bundle, source, out, task="zeroshot", labels=("物流", "质量"), overwrite=True,
                          output_format="jsonl", progress=True))
    assert done.complete and done.skipped == 0
    assert not list(out.glob("part-*.parquet")) and len(list(out.glob("part-*.jsonl"))) == done.shards
    assert json.loads((out / MANIFEST).read_text())["task"] == "zeroshot"


def test_zero_shot_from_csv_to_jsonl(local_ray, tiny_bundle, tmp_path):
    source = tmp_path / "comments.csv"
    rows = ["comment_id,body"] + [f'{i},"{PHRASES[i]}"' for i in range(12)] + ['12,""', "13,多,一列"]
    source.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "topics"
    result = run_job(config(tiny_bundle, source, out, task="zeroshot", labels=("物流", "质量", "服务"),
                            template="这条评论说的是{}", text_column="body", id_column="comment_id",
                            output_format="jsonl", block_rows=5, max_batch_size=32))
    assert result.complete and (result.rows, result.errors) == (14, 2)
    lines = [json.loads(line) for p in sorted(out.glob("part-*.jsonl")) for line in p.read_text().splitlines()]
    assert [line["comment_id"] for line in lines] == [str(i) for i in range(14)]
    assert set(lines[0]) == {"comment_id", "row", "labels", "truncated", "error", "error_code"}
    for line in lines[:12]:
        assert sorted(e["label"] for e in line["labels"]) == ["服务", "物流", "质量"] and line["error"] is None
        assert sum(e["score"] for e in line["labels"]) == pytest.approx(1.0, abs=1e-5)
    assert lines[12]["error_code"] == "INVALID_ARGUMENT" and lines[12]["labels"] is None
    assert "3 fields; the header has 2" in lines[13]["error"]


def test_parquet_in_parquet_out_keeps_the_id_type_over_two_actors(local_ray, tiny_bundle, tmp_path):
    source = tmp_path / "comments.parquet"
    pq.write_table(pa.table({"id": pa.array(range(100, 130), pa.int64()),
                             "text": [PHRASES[i] for i in range(30)]}), source, row_group_size=7)
    out = tmp_path / "scored"
    result = run_job(config(tiny_bundle, source, out, block_rows=10, cpus_per_actor=1))  # as on a cluster
    assert result.complete and (result.actors, result.cpus_per_actor) == (2, 1)
    table = read_output(str(out))
    assert table.schema.field("id").type == pa.int64()
    assert table.column("id").to_pylist() == list(range(100, 130))
    assert table.column("label").to_pylist() == [EXPECTED[PHRASES[i]] for i in range(30)]


def test_command_line_exit_codes(local_ray, tiny_bundle, tmp_path, capsys):
    source = write_jsonl(tmp_path / "comments.jsonl")
    args = [str(source), "--out", str(tmp_path / "scored"), "--bundle", str(tiny_bundle), "--block-rows", "20",
            "--no-progress", "--max-batch-size", "1", "--max-chars-per-text", "2000"]
    assert cli_main(args + ["--max-blocks", "1", "--json"]) == 3  # blocks left
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["blocks_left"] == 2
    assert cli_main(args) == 0
    assert "1 block(s) kept from an earlier run; done" in capsys.readouterr().err
    assert cli_main(args[:3] + ["--bundle", str(tiny_bundle), "--task", "zeroshot"]) == 2  # no labels
    assert "labels is empty" in capsys.readouterr().err
    assert cli_main([str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x"), "--bundle", str(tiny_bundle)]) == 2


def test_killed_run_resumes_to_exactly_one_row_per_record(local_ray, tiny_bundle, tmp_path):
    """SIGKILL of the whole senti-batch process group once a first block is written; the rerun keeps the blocks
    that were whole and scores the rest. Holds however far the killed run got."""
    n = 120
    source = write_jsonl(tmp_path / "comments.jsonl", n=n, blank_at=())
    out = tmp_path / "scored"
    command = [sys.executable, "-m", "senti.batch", str(source), "--out", str(out), "--bundle", str(tiny_bundle),
               "--block-rows", "4", "--max-batch-size", "1", "--no-progress", "--num-cpus", "1",
               "--max-chars-per-text", "2000"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300  # a bound on a stuck start, not a timing the test relies on
        while not list(out.glob("part-*")) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert list(out.glob("part-*")), process.stderr.read().decode()[-3000:] if process.poll() else "no part"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        process.stderr.close()
    kept = snapshot(out)
    result = run_job(config(tiny_bundle, source, out, block_rows=4))
    assert result.complete and result.skipped >= len(kept) and result.skipped + result.scored == n // 4
    after = snapshot(out)
    assert {name: after[name] for name in kept} == kept
    check_sentiment_output(out, n=n, blank_at=())

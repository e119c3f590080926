"""The `senti` CLI against a real server: predict, zeroshot, stream, info and eval."""
import io
import json

import pytest

from senti.client.cli import main


def run_cli(server, capsys, *args, stdin: str | None = None, monkeypatch=None) -> tuple[int, str, str]:
    running, _ = server
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(["--target", f"127.0.0.1:{running.port}", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_predict_and_zeroshot(tiny_server, capsys):
    code, out, _ = run_cli(tiny_server, capsys, "predict", "很好", "很差")
    assert code == 0 and [r["text"] for r in lines(out)] == ["很好", "很差"]
    assert all(r["label"] in ("negative", "positive") for r in lines(out))
    code, out, _ = run_cli(tiny_server, capsys, "zeroshot", "球赛", "--labels", "体育,财经")
    [row] = lines(out)
    assert code == 0 and {label for label, _ in row["labels"]} == {"体育", "财经"}


def test_stream_json_lines_in_and_out(tiny_server, capsys, monkeypatch):
    stdin = '{"id": "a", "text": "不错"}\n{"id": "b", "text": "  "}\n纯文本一行\n'
    code, out, _ = run_cli(tiny_server, capsys, "stream", stdin=stdin, monkeypatch=monkeypatch)
    rows = {r["id"]: r for r in lines(out)}
    assert code == 0 and set(rows) == {"a", "b", "3"}
    assert rows["b"]["error"] == "INVALID_ARGUMENT" and "label" in rows["a"] and "label" in rows["3"]


def test_info_and_a_bad_request_exit_code(tiny_server, capsys):
    code, out, _ = run_cli(tiny_server, capsys, "info")
    assert code == 0 and lines(out)[0]["models"][0]["kind"] == "embedding"
    code, _, err = run_cli(tiny_server, capsys, "zeroshot", "x", "--labels", "a,a")
    assert code == 1 and "INVALID_ARGUMENT" in err


def test_eval_sentiment_and_zeroshot_files(tiny_server, capsys, tmp_path):
    _, client = tiny_server
    reviews = [("非常满意", "positive"), ("太差劲了", "negative"), ("很好用", "positive"), ("退货", "negative")]
    path = tmp_path / "reviews.jsonl"
    path.write_text("\n".join(json.dumps({"text": t, "label": l}, ensure_ascii=False) for t, l in reviews))
    expected = sum(p.label == gold for p, (_, gold) in zip(client.predict([t for t, _ in reviews]), reviews))
    code, out, _ = run_cli(tiny_server, capsys, "eval", str(path), "--json")
    [report] = lines(out)
    assert code == 0 and report["task"] == "sentiment" and report["n"] == 4
    assert report["accuracy"] == pytest.approx(expected / 4)
    assert sum(sum(row.values()) for row in report["confusion"].values()) == 4

    news = tmp_path / "news.jsonl"
    news.write_text('{"text": "球队夺冠", "label": "体育"}\n{"text": "股价大涨", "label": "财经"}\n')
    code, out, _ = run_cli(tiny_server, capsys, "eval", str(news))
    assert code == 0 and "task: zeroshot" in out and "n: 2" in out


def test_zeroshot_and_eval_with_an_examples_file(tiny_server, capsys, tmp_path):
    _, client = tiny_server
    examples = tmp_path / "examples.jsonl"
    examples.write_text('{"text": "球队夺冠", "label": "体育"}\n{"text": "主场比赛", "label": "体育"}\n'
                        '{"text": "股价大涨", "label": "财经"}\n')
    want = client.classify_zero_shot(["球赛"], ["体育", "财经"], examples={"体育": ["球队夺冠", "主场比赛"],
                                                                        "财经": ["股价大涨"]})
    # labels default to those of the examples file, in file order
    code, out, _ = run_cli(tiny_server, capsys, "zeroshot", "球赛", "--examples", str(examples))
    [row] = lines(out)
    assert code == 0 and row["labels"] == [[label, round(score, 4)] for label, score in want[0].labels]

    news = tmp_path / "news.jsonl"
    news.write_text('{"text": "球队夺冠", "label": "体育"}\n{"text": "股价大涨", "label": "财经"}\n')
    code, out, _ = run_cli(tiny_server, capsys, "eval", str(news), "--examples", str(examples), "--json")
    [report] = lines(out)
    results = client.classify_zero_shot(["球队夺冠", "股价大涨"], sorted(["体育", "财经"]),
                                        examples={"体育": ["球队夺冠", "主场比赛"], "财经": ["股价大涨"]})
    expected = sum(r.best == gold for r, gold in zip(results, ["体育", "财经"]))
    assert code == 0 and report["task"] == "fewshot" and report["n"] == 2
    assert report["accuracy"] == pytest.approx(expected / 2)
    code, _, err = run_cli(tiny_server, capsys, "eval", str(news), "--examples", str(examples), "--task", "sentiment")
    assert code == 2 and "examples are for zero-shot" in err

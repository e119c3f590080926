"""The page at `/` in a real headless Chromium against a real server (HTTP API in the same process).

The tiny model is random: the tests never assume its output on arbitrary text. They compare what the page shows
with what the API answers for the same input (the server's result cache makes that exact even when the page's
texts were batched with other texts), and rely on a known label only for TINY_POSITIVE / TINY_NEGATIVE phrases
sent one per request.
"""
import csv
import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import SCREENSHOTS, open_page, screenshots_wanted
from tests.conftest import running_server
from tests.tiny_bundles import TINY_NEGATIVE, TINY_POSITIVE

expect.set_options(timeout=20_000)
CJK = re.compile(r"[\u3400-\u9fff\uff00-\uffef\u3000-\u303f]")


def http_json(base: str, path: str, body=None) -> tuple[int, dict]:
    """(HTTP status, JSON body) of a GET (body None) or a JSON POST."""
    data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(base + path, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def api_labels(base: str, texts: list[str]) -> list[str]:
    """The API's label of each text, one text per request."""
    labels = []
    for text in texts:
        status, body = http_json(base, "/v1/predict", {"texts": [text]})
        assert status == 200, body
        labels.append(body["predictions"][0]["label"])
    return labels


@pytest.fixture(scope="module")
def tiny(tiny_bundle):
    with running_server(tiny_bundle, http_port=0) as (running, client):
        yield SimpleNamespace(base=f"http://127.0.0.1:{running.http_port}", client=client)


@pytest.fixture
def page(browser, tiny):
    with open_page(browser, tiny.base) as page:
        yield page


def download(page, testid: str) -> tuple[str, str]:
    """(suggested file name, text) of what clicking a download link saves."""
    with page.expect_download() as info:
        page.get_by_test_id(testid).click()
    saved = info.value
    return saved.suggested_filename, Path(saved.path()).read_text(encoding="utf-8")


def upload(page, path: Path, rows: int) -> None:
    """Picks `path` in the file tab, starts the job and waits for it to finish."""
    page.get_by_test_id("tab-file").click()
    page.get_by_test_id("file-input").set_input_files(str(path))
    expect(page.get_by_test_id("file-summary")).to_contain_text(str(rows))
    page.get_by_test_id("file-start").click()
    expect(page.get_by_test_id("file-progress")).to_have_attribute("aria-valuenow", "100")
    expect(page.get_by_test_id("file-progress-text")).to_contain_text(f"{rows} / {rows}")
    expect(page.get_by_test_id("download-csv")).to_be_visible()
    expect(page.get_by_test_id("download-jsonl")).to_be_visible()


# -- sentiment -------------------------------------------------------------------------------------------------

def test_one_comment_shows_the_api_label_with_a_bar_per_label(page, tiny):
    text = TINY_POSITIVE[0]
    page.get_by_test_id("sentiment-input").fill(text)
    page.get_by_test_id("sentiment-submit").click()
    result = page.get_by_test_id("sentiment-result")
    expect(result).to_have_count(1)
    expect(result.get_by_test_id("sentiment-label")).to_have_text("positive")  # fitted phrase, alone
    [prediction] = tiny.client.predict([text])
    assert result.get_by_test_id("sentiment-label").inner_text() == prediction.label
    bars = result.get_by_test_id("bar")
    expect(bars).to_have_count(len(prediction.scores))
    shown = {bars.nth(i).get_attribute("data-label"): float(bars.nth(i).get_attribute("data-score"))
             for i in range(bars.count())}
    assert shown.keys() == prediction.scores.keys()
    for label, score in prediction.scores.items():
        assert shown[label] == pytest.approx(score, abs=1e-6)
    expect(result.get_by_test_id("sentiment-polarity")).to_have_text("正面")


def test_many_lines_one_result_each_equal_to_the_api(page, tiny):
    lines = [TINY_NEGATIVE[0], "", "   ", TINY_POSITIVE[3], "今天下午去公园散步了", f"  {TINY_NEGATIVE[5]}  "]
    texts = [line.strip() for line in lines if line.strip()]
    page.get_by_test_id("sentiment-input").fill("\n".join(lines))
    page.get_by_test_id("sentiment-input").press("Control+Enter")  # the shortcut submits too
    results = page.get_by_test_id("sentiment-result")
    expect(results).to_have_count(len(texts))
    assert results.get_by_test_id("result-text").all_inner_texts() == texts
    status, body = http_json(tiny.base, "/v1/predict", {"texts": texts})
    assert status == 200, body
    assert results.get_by_test_id("sentiment-label").all_inner_texts() == [p["label"] for p in body["predictions"]]
    expect(page.get_by_test_id("sentiment-status")).to_contain_text(str(len(texts)))


def test_an_empty_request_is_refused_on_the_page(page):
    page.get_by_test_id("sentiment-submit").click()
    expect(page.get_by_test_id("sentiment-error")).to_be_visible()
    expect(page.get_by_test_id("sentiment-result")).to_have_count(0)


# -- zero-shot ---------------------------------------------------------------------------------------------------

def test_zero_shot_ranks_the_labels_like_the_api(page, tiny):
    text, template = "国足客场二比一逆转取胜", "这是一条{}新闻"
    page.get_by_test_id("tab-zeroshot").click()
    page.get_by_test_id("zeroshot-input").fill(text)
    page.get_by_test_id("zeroshot-labels").fill("体育，财经,科技、 娱乐")  # Chinese and ASCII commas
    page.get_by_test_id("zeroshot-template").fill(template)
    page.get_by_test_id("zeroshot-submit").click()
    result = page.get_by_test_id("zeroshot-result")
    expect(result).to_have_count(1)
    bars = result.get_by_test_id("bar")
    expect(bars).to_have_count(4)
    status, body = http_json(tiny.base, "/v1/zero-shot", {"texts": [text], "labels": ["体育", "财经", "科技", "娱乐"],
                                                          "hypothesisTemplate": template})
    assert status == 200, body
    ranked = body["results"][0]["labels"]
    assert result.get_by_test_id("zeroshot-top").inner_text() == ranked[0]["label"]
    assert [bars.nth(i).get_attribute("data-label") for i in range(4)] == [s["label"] for s in ranked]
    scores = [float(bars.nth(i).get_attribute("data-score")) for i in range(4)]
    assert scores == sorted(scores, reverse=True)
    assert scores == pytest.approx([s["score"] for s in ranked], abs=1e-6)


def test_zero_shot_shows_the_servers_error_message(page, tiny):
    body = {"texts": ["国足客场二比一逆转取胜"], "labels": ["体育", "财经"], "hypothesisTemplate": "没有占位符"}
    status, error = http_json(tiny.base, "/v1/zero-shot", body)
    assert status == 400 and error["message"]
    page.watch.allow = ("status of 400",)  # Chromium logs the failed fetch
    page.get_by_test_id("tab-zeroshot").click()
    page.get_by_test_id("zeroshot-input").fill(body["texts"][0])
    page.get_by_test_id("zeroshot-labels").fill("体育,财经")
    page.get_by_test_id("zeroshot-template").fill(body["hypothesisTemplate"])
    page.get_by_test_id("zeroshot-submit").click()
    box = page.get_by_test_id("zeroshot-error")
    expect(box).to_be_visible()
    expect(box).to_contain_text(error["message"])
    expect(box).to_contain_text("400")
    expect(box).to_contain_text("INVALID_ARGUMENT")


# -- files ---------------------------------------------------------------------------------------------------------

def test_csv_upload_streams_every_row_and_downloads_the_results(page, tiny, tmp_path):
    texts = TINY_POSITIVE[:6] + TINY_NEGATIVE[:6] + ["", '他说："很好, 非常好"\n第二行也很好', "今天下午去公园散步了"]
    path = tmp_path / "comments.csv"
    with path.open("w", encoding="utf-8", newline="") as f:  # the text column is not the first one
        writer = csv.writer(f)
        writer.writerow(["id", "source", "text"])
        writer.writerows([f"c{i}", "shop", text] for i, text in enumerate(texts))
    empty = texts.index("")
    upload(page, path, len(texts))
    expect(page.get_by_test_id("file-row")).to_have_count(len(texts))
    expect(page.get_by_test_id("file-row").nth(empty).get_by_test_id("file-row-error")).not_to_be_empty()

    name, content = download(page, "download-csv")
    assert name == "comments.results.csv"
    assert content.startswith("\ufeff")  # so that Excel reads UTF-8
    rows = list(csv.DictReader(content.removeprefix("\ufeff").splitlines(keepends=True)))
    assert len(rows) == len(texts)
    assert list(rows[0]) == ["id", "text", "label", "score", "error"]
    assert [r["id"] for r in rows] == [f"c{i}" for i in range(len(texts))]
    assert [r["text"] for r in rows] == texts
    assert rows[empty]["error"] and not rows[empty]["label"] and not rows[empty]["score"]
    good = [i for i in range(len(texts)) if i != empty]
    assert all(not rows[i]["error"] for i in good), [rows[i]["error"] for i in good]
    assert [rows[i]["label"] for i in good] == api_labels(tiny.base, [texts[i] for i in good])
    assert all(0.0 <= float(rows[i]["score"]) <= 1.0 for i in good)
    expect(page.get_by_test_id("file-counts")).to_contain_text(f"{len(good)}")


def test_jsonl_upload_marks_bad_lines_and_keeps_going(page, tiny, tmp_path):
    lines = [
        json.dumps({"id": "a1", "text": TINY_POSITIVE[1]}, ensure_ascii=False),
        json.dumps({"id": 2, "text": TINY_NEGATIVE[2]}, ensure_ascii=False),
        json.dumps({"id": "empty", "text": ""}),
        "{not json",
        "",
        json.dumps({"id": "no-text"}),
        json.dumps({"id": "x", "text": "今天下午去公园散步了"}, ensure_ascii=False),
    ]
    path = tmp_path / "comments.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    upload(page, path, 6)  # the blank line is not a row

    name, content = download(page, "download-jsonl")
    assert name == "comments.results.jsonl"
    records = [json.loads(line) for line in content.splitlines()]
    assert [r["id"] for r in records] == ["a1", "2", "empty", "4", "no-text", "x"]
    assert all(set(r) == {"id", "text", "label", "score", "error"} for r in records)
    failed = {r["id"] for r in records if r["error"]}
    assert failed == {"empty", "4", "no-text"}
    assert all(r["label"] is None for r in records if r["error"])
    ok = [r for r in records if not r["error"]]
    assert [r["label"] for r in ok] == api_labels(tiny.base, [r["text"] for r in ok])
    expect(page.get_by_test_id("file-counts")).to_contain_text("3")


# -- language, model info ------------------------------------------------------------------------------------------

def test_english_toggle_switches_every_label(page):
    page.get_by_test_id("sentiment-input").fill(TINY_NEGATIVE[0])
    page.get_by_test_id("sentiment-submit").click()
    expect(page.get_by_test_id("sentiment-polarity")).to_have_text("负面")
    expect(page.get_by_test_id("tab-sentiment")).to_have_text("情感分析")

    page.get_by_test_id("lang-toggle").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_test_id("tab-sentiment")).to_have_text("Sentiment")
    expect(page.get_by_test_id("sentiment-submit")).to_have_text("Analyze sentiment")
    expect(page.get_by_test_id("sentiment-polarity")).to_have_text("Negative")  # results already shown too
    expect(page.locator("#model-heading")).to_have_text("Model info")
    still_chinese = page.evaluate("""() => [...document.querySelectorAll('[data-i18n]')]
        .filter((el) => el.id !== 'lang-toggle').map((el) => el.textContent)""")
    assert [text for text in still_chinese if CJK.search(text)] == []
    assert not CJK.search(page.title())

    page.get_by_test_id("lang-toggle").click()
    expect(page.get_by_test_id("tab-sentiment")).to_have_text("情感分析")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")


def test_model_panel_shows_the_model_info(page, tiny):
    status, info = http_json(tiny.base, "/v1/model-info")
    assert status == 200
    model = info["models"][0]
    expect(page.get_by_test_id("model-name")).to_have_text(model["name"])
    expect(page.get_by_test_id("model-labels")).to_contain_text(model["labels"][0])
    expect(page.get_by_test_id("model-template")).to_have_text(model["defaultTemplate"])
    expect(page.get_by_test_id("model-version")).to_have_text(info["version"])
    expect(page.get_by_test_id("limit-max-texts")).to_have_text(str(info["limits"]["maxTextsPerRequest"]))
    expect(page.get_by_test_id("zeroshot-template")).to_have_attribute("placeholder", model["defaultTemplate"])


# -- the real default model (and the screenshots in docs/screenshots, with SENTI_SCREENSHOTS=1) ------------------

REVIEWS = ["物流很快，包装完好，非常满意", "这家餐厅太难吃了，服务员态度也很差", "质量太差了，用了两天就坏了，再也不买了",
           "服务很贴心，下次还会再来"]
NEWS = ["国足客场二比一逆转取胜，晋级世界杯十强赛", "央行宣布下调存款准备金率0.5个百分点"]


def shoot(page, name: str) -> None:
    if screenshots_wanted():
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


@pytest.mark.slow
@pytest.mark.default_bundle
def test_default_model_in_the_page(browser, default_bundle, tmp_path):
    with running_server(default_bundle, http_port=0) as (running, client):
        base = f"http://127.0.0.1:{running.http_port}"
        with open_page(browser, base) as page:
            page.get_by_test_id("sentiment-input").fill("\n".join(REVIEWS))
            page.get_by_test_id("sentiment-submit").click()
            labels = page.get_by_test_id("sentiment-result").get_by_test_id("sentiment-label")
            expect(labels).to_have_count(len(REVIEWS))
            assert labels.all_inner_texts() == ["positive", "negative", "negative", "positive"]
            assert labels.all_inner_texts() == [p.label for p in client.predict(REVIEWS)]
            shoot(page, "sentiment.png")

            page.get_by_test_id("tab-zeroshot").click()
            page.get_by_test_id("zeroshot-input").fill("\n".join(NEWS))
            page.get_by_test_id("zeroshot-labels").fill("体育，财经，科技，娱乐")
            page.get_by_test_id("zeroshot-submit").click()
            tops = page.get_by_test_id("zeroshot-result").get_by_test_id("zeroshot-top")
            expect(tops).to_have_count(len(NEWS))
            assert tops.all_inner_texts() == ["体育", "财经"]
            assert tops.all_inner_texts() == [r.best for r in client.classify_zero_shot(NEWS, ["体育", "财经", "科技", "娱乐"])]
            shoot(page, "zero-shot.png")

            comments = REVIEWS + ["", "快递员很有礼貌，送货上门", "屏幕有坏点，联系客服也没人理", "性价比很高，推荐购买",
                                  "衣服尺码偏小，面料一般", "孩子很喜欢这个玩具"]
            path = tmp_path / "评论.csv"
            with path.open("w", encoding="utf-8", newline="") as f:  # one column, no id: the empty one is ""
                csv.writer(f).writerows([["text"]] + [[c] for c in comments])
            upload(page, path, len(comments))
            _, content = download(page, "download-csv")
            rows = list(csv.DictReader(content.removeprefix("\ufeff").splitlines(keepends=True)))
            assert [r["id"] for r in rows] == [str(i + 1) for i in range(len(comments))]
            assert rows[comments.index("")]["error"]
            good = [r for r in rows if r["text"]]
            assert [r["label"] for r in good] == [p.label for p in client.predict([r["text"] for r in good])]
            shoot(page, "file-upload.png")

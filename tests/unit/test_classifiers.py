"""Named classifiers: reading and checking the file, and the registry's reloads (no model needed)."""
import json

import pytest

from senti.model.classifiers import ClassifierRegistry, load_catalog
from senti.model.errors import InvalidInput, NotFound
from senti.model.validation import Limits

LIMITS = Limits(max_labels_per_request=4, max_examples_per_label=3, max_examples_per_request=4)


def write(path, document) -> None:
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")


@pytest.fixture
def catalog_file(tmp_path):
    (tmp_path / "mod.jsonl").write_text('{"text": "加微信领红包", "label": "广告"}\n\n{"text": "你真蠢", "label": "辱骂"}\n',
                                        encoding="utf-8")
    path = tmp_path / "classifiers.json"
    write(path, {"classifiers": {
        "moderation": {"labels": ["辱骂", "广告", "正常"], "template": "这是一条{}评论", "multi_label": True,
                       "description": "comments", "examples": {"广告": ["扫码关注"]}, "examples_file": "mod.jsonl"},
        "topics": {"labels": ["体育", "财经"]}}})
    return path


def test_a_file_gives_each_classifier_its_labels_template_and_examples(catalog_file):
    catalog = load_catalog(catalog_file, LIMITS)
    moderation, topics = catalog.classifiers["moderation"], catalog.classifiers["topics"]
    assert moderation.labels == ("辱骂", "广告", "正常") and moderation.template == "这是一条{}评论"
    assert moderation.multi_label and moderation.description == "comments"
    # inline examples first, then the examples file's, per label
    assert dict(moderation.examples) == {"广告": ("扫码关注", "加微信领红包"), "辱骂": ("你真蠢",)}
    assert moderation.example_counts() == {"广告": 2, "辱骂": 1}
    assert topics.template == "" and not topics.multi_label and topics.examples == ()
    assert len(catalog.version) == 12


def test_the_version_follows_the_examples_file_too(catalog_file):
    before = load_catalog(catalog_file, LIMITS).version
    with open(catalog_file.parent / "mod.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"text": "傻子", "label": "辱骂"}\n')
    assert load_catalog(catalog_file, LIMITS).version != before


@pytest.mark.parametrize("document, message", [
    ({"classifier": {}}, 'expected {"classifiers": {"name": {"labels": [...]}, ...}}'),
    ({"classifiers": {"a": ["x"]}}, "classifier 'a': expected an object with labels"),
    ({"classifiers": {"a": {"labels": ["x"], "temlate": "{}"}}}, "classifier 'a': unknown keys ['temlate']"),
    ({"classifiers": {"a": {"labels": "x,y"}}}, "classifier 'a': labels must be a list of strings"),
    ({"classifiers": {"a": {"labels": []}}}, "classifier 'a': labels is empty; name at least one candidate label"),
    ({"classifiers": {"a": {"labels": ["x", "x"]}}}, "classifier 'a': labels[1] 'x' repeats labels[0]"),
    ({"classifiers": {"a": {"labels": ["x"], "template": "无括号"}}},
     "classifier 'a': hypothesis_template must contain '{}' exactly once, got '无括号'"),
    ({"classifiers": {"a": {"labels": ["x"], "examples": {"y": ["t"]}}}},
     "classifier 'a': examples[0].label 'y' is not one of labels"),
    ({"classifiers": {"a": {"labels": ["x"], "examples": {"x": ["1", "2", "3", "4"]}}}},
     "classifier 'a': examples[0] ('x') has 4 texts; the limit is 3 per label"),
    ({"classifiers": {"a": {"labels": ["x"], "examples": {"x": "t"}}}},
     "classifier 'a': examples must map labels to lists of texts"),
    ({"classifiers": {" ": {"labels": ["x"]}}}, "a classifier has an empty name"),
    ({"classifiers": {"a": {"labels": ["x"], "examples_file": "missing.jsonl"}}}, "classifier 'a': cannot read"),
])
def test_a_bad_file_is_refused_with_what_is_wrong_where(tmp_path, document, message):
    path = tmp_path / "c.json"
    write(path, document)
    with pytest.raises(InvalidInput) as error:
        load_catalog(path, LIMITS)
    assert message in str(error.value)


def test_bad_json_and_bad_example_lines_name_the_file_and_line(tmp_path):
    path = tmp_path / "c.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"c.json: not JSON"):
        load_catalog(path, LIMITS)
    (tmp_path / "e.jsonl").write_text('{"text": "好", "label": "x"}\n{"text": 3}\n', encoding="utf-8")
    write(path, {"classifiers": {"a": {"labels": ["x"], "examples_file": "e.jsonl"}}})
    with pytest.raises(InvalidInput, match=r'e.jsonl:2: expected \{"text": "...", "label": "..."\}'):
        load_catalog(path, LIMITS)
    with pytest.raises(InvalidInput, match="cannot read the classifiers file"):
        load_catalog(tmp_path / "none.json", LIMITS)


def test_an_unknown_name_is_not_found_and_lists_the_registered_ones(catalog_file):
    registry = ClassifierRegistry(catalog_file, LIMITS)
    assert registry.get("topics").labels == ("体育", "财经")
    with pytest.raises(NotFound, match=r"classifier 'spam' is not registered; registered: moderation, topics"):
        registry.get("spam")
    with pytest.raises(NotFound, match=r"registered: none \(the server was started without --classifiers\)"):
        ClassifierRegistry(None).get("topics")


def test_a_bad_edit_keeps_the_old_classifiers_and_a_good_one_replaces_them(catalog_file):
    results = []
    registry = ClassifierRegistry(catalog_file, LIMITS, on_reload=lambda catalog, ok: results.append(ok))
    before = registry.catalog
    assert registry.reload(force=False) and results == []  # unchanged: nothing re-read
    catalog_file.write_text('{"classifiers": {"x": {"labels": []}}}', encoding="utf-8")
    assert not registry.reload(force=False) and results == [False]
    assert registry.catalog is before
    assert registry.reload(force=False) and results == [False]  # a bad version is reported once
    write(catalog_file, {"classifiers": {"intents": {"labels": ["退款", "物流"]}}})
    assert registry.reload(force=False) and results == [False, True]
    assert list(registry.catalog.classifiers) == ["intents"] and registry.catalog.version != before.version


def test_the_watcher_picks_up_a_changed_file(catalog_file):
    registry = ClassifierRegistry(catalog_file, LIMITS)
    try:
        registry.watch(0.01)
        before = registry.catalog.version
        write(catalog_file, {"classifiers": {"intents": {"labels": ["退款", "物流"]}}})
        assert registry.wait_for_version(before, timeout=30)
        assert list(registry.catalog.classifiers) == ["intents"]
    finally:
        registry.close()

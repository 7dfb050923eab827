import json

import pytest

from fishflow.errors import InputError
from fishflow.planning.inputs import _id_problem, read_rows
from tests.helpers import write_jsonl


def rows_of(tmp_path, lines, lang="en"):
    return read_rows(write_jsonl(tmp_path / f"{lang}.jsonl", lines), lang)


def test_rows_without_id_get_zero_padded_row_index(tmp_path):
    rows = rows_of(tmp_path, [{"text": "a"}, {"id": "x", "text": "b"}, {"text": "c"}])
    assert [r.id for r in rows] == ["000000", "x", "000002"]
    assert [r.line for r in rows] == [1, 2, 3]


def test_bom_crlf_and_blank_lines_are_accepted(tmp_path):
    path = tmp_path / "en.jsonl"
    path.write_bytes(
        b'\xef\xbb\xbf{"id": "a", "text": "Hello"}\r\n\r\n{"id": "b", "text": "Bye"}\r\n'
    )
    rows = read_rows(path, "en")
    assert [(r.id, r.text, r.line) for r in rows] == [("a", "Hello", 1), ("b", "Bye", 3)]


def test_integer_ids_become_strings(tmp_path):
    assert rows_of(tmp_path, [{"id": 7, "text": "a"}])[0].id == "7"


@pytest.mark.parametrize(
    ("lines", "line", "message"),
    [
        (['{"id": "a", "text": "ok"}', '{"id": "b", "text": '], 2, "malformed JSON"),
        (['["a list"]'], 1, "expected a JSON object"),
        (['{"id": "a"}'], 1, "missing 'text'"),
        (['{"id": "a", "text": "   "}'], 1, "'text' is empty"),
        (['{"id": "a", "text": 5}'], 1, "'text' must be a string"),
        (['{"id": "a", "text": "x"}', '{"id": "a", "text": "y"}'], 2, "duplicate id 'a'"),
        (['{"id": "../etc", "text": "x"}'], 1, "unsafe"),
        (['{"id": "a/b", "text": "x"}'], 1, "path separator"),
        (['{"id": "a\\\\b", "text": "x"}'], 1, "path separator"),
        (['{"id": "..", "text": "x"}'], 1, "'..'"),
        (['{"id": "a\\u0000b", "text": "x"}'], 1, "control character"),
        (['{"id": "a\\nb", "text": "x"}'], 1, "control character"),
        (['{"id": ".hidden", "text": "x"}'], 1, "starts with '.'"),
        (['{"id": "", "text": "x"}'], 1, "is empty"),
        (['{"id": ["a"], "text": "x"}'], 1, "'id' must be a string"),
        (['{"id": "a", "text": "x", "lang": "de"}'], 1, "does not match this file's language"),
        (['{"text": "x"}', '{"id": "000000", "text": "y"}'], 2, "duplicate id '000000'"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, lines, line, message):
    path = write_jsonl(tmp_path / "en.jsonl", lines)
    with pytest.raises(InputError, match=message) as caught:
        read_rows(path, "en")
    assert caught.value.line == line
    assert str(caught.value).startswith(f"{path}:{line}: ")


def test_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "en.jsonl"
    path.write_bytes(b'{"text": "fine"}\n{"text": "\xff\xfe"}\n')
    with pytest.raises(InputError, match="not valid UTF-8") as caught:
        read_rows(path, "en")
    assert caught.value.line == 2


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_rows(tmp_path / "nope.jsonl", "en")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(InputError, match="no rows"):
        read_rows(tmp_path / "empty.jsonl", "en")


def test_unicode_text_is_kept_verbatim(tmp_path):
    text = "今日はとても良い天気ですね。"
    rows = rows_of(tmp_path, [json.dumps({"id": "ja1", "text": text}, ensure_ascii=False)], "ja")
    assert rows[0].text == text


@pytest.mark.parametrize(
    ("item_id", "problem"),
    [
        ("en-001_b.2", None),
        ("a" * 200, None),
        ("a" * 201, "longer than"),
        ("a..b", "'..'"),
        (".hidden", "starts with '.'"),
        ("x y", None),
        ("x\u200by", "control character"),
    ],
)
def test_id_checks(item_id, problem):
    found = _id_problem(item_id)
    assert found is None if problem is None else problem in found

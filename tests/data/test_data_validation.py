"""Every validation error: a DataError naming the file, the line and the field."""

from __future__ import annotations

import pickle

import pytest

from rlhfkit.data import DataError, load_records

VALID = {
    "prompts": {"prompt": "p"},
    "demos": {"prompt": "p", "response": "r"},
    "pairs": {"prompt": "p", "chosen": "a", "rejected": "b"},
    "rankings": {"prompt": "p", "responses": ["a", "b"]},
    "ratings": {"prompt": "p", "response": "r", "rating": 4},
}
ASSISTANT = {"role": "assistant", "content": "ok"}

CASES = [
    # (kind, bad row, field, reason)
    ("prompts", {"prompt": 3}, "prompt", "wrong type"),
    ("prompts", {"prompt": "   \n"}, "prompt", "empty text"),
    ("prompts", {"prompt": []}, "prompt", "empty text"),
    (
        "prompts",
        {"prompt": [{"role": "system", "content": ""}, {"role": "user", "content": " "}]},
        "prompt",
        "empty text",
    ),
    ("prompts", {"nothing": "here"}, "prompt", "missing field"),
    ("prompts", {"prompt": None}, "prompt", "missing field"),
    ("demos", {"prompt": "p"}, "response", "missing field"),
    ("demos", {"prompt": "p", "response": ""}, "response", "empty text"),
    ("demos", {"prompt": "", "response": "r"}, "prompt", "empty text"),
    ("demos", {"prompt": "p", "response": 5}, "response", "wrong type"),
    ("demos", {"prompt": "hi", "completion": [{"role": "assistant", "content": "x"}]}, "completion", "wrong type"),
    (
        "demos",
        {"prompt": [{"role": "user", "content": "hi"}], "completion": [{"role": "user", "content": "x"}]},
        "completion",
        "wrong type",
    ),
    ("demos", {"messages": [{"role": "user", "content": "hi"}]}, "messages[0].role", "wrong type"),
    ("demos", {"messages": [ASSISTANT]}, "messages", "empty text"),
    (
        "demos",
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": " "}]},
        "messages[1].content",
        "empty text",
    ),
    ("demos", {"messages": [{"role": "robot", "content": "hi"}, ASSISTANT]}, "messages[0].role", "unknown role"),
    ("demos", {"messages": [{"role": "user"}, ASSISTANT]}, "messages[0].content", "missing field"),
    ("demos", {"messages": [{"content": "hi"}, ASSISTANT]}, "messages[0].role", "missing field"),
    ("demos", {"messages": [{"role": "user", "content": ["hi"]}, ASSISTANT]}, "messages[0].content", "wrong type"),
    ("demos", {"messages": ["hi", ASSISTANT]}, "messages[0]", "wrong type"),
    ("demos", {"messages": "hi"}, "messages", "wrong type"),
    ("pairs", {"prompt": "p", "chosen": "a"}, "rejected", "missing field"),
    ("pairs", {"prompt": "p", "rejected": "b"}, "chosen", "missing field"),
    ("pairs", {"prompt": "p", "chosen": "", "rejected": "b"}, "chosen", "empty text"),
    ("pairs", {"prompt": "p", "chosen": "a", "rejected": "\t"}, "rejected", "empty text"),
    ("pairs", {"prompt": " ", "chosen": "a", "rejected": "b"}, "prompt", "empty text"),
    ("pairs", {"prompt": "p", "chosen": "same", "rejected": "same "}, "rejected", "identical chosen and rejected"),
    ("pairs", {"prompt": "p", "chosen": "a", "rejected": "b", "margin": -1}, "margin", "invalid value"),
    ("pairs", {"prompt": "p", "chosen": "a", "rejected": "b", "margin": "big"}, "margin", "wrong type"),
    ("pairs", {"prompt": "p", "chosen": "a", "rejected": "b", "tie": "yes"}, "tie", "wrong type"),
    ("pairs", {"chosen": "abc", "rejected": "xyz"}, "prompt", "no common prompt"),
    ("pairs", {"chosen": "same", "rejected": "same"}, "rejected", "identical chosen and rejected"),
    ("pairs", {"chosen": "ab", "rejected": "abc"}, "chosen", "empty text"),
    (
        "pairs",
        {
            "chosen": [{"role": "user", "content": "a"}, ASSISTANT],
            "rejected": [{"role": "user", "content": "b"}, {"role": "assistant", "content": "no"}],
        },
        "rejected",
        "mismatched conversations",
    ),
    (
        "pairs",
        {
            "chosen": [{"role": "user", "content": "a"}, {"role": "system", "content": "x"}],
            "rejected": [{"role": "user", "content": "a"}, ASSISTANT],
        },
        "chosen[1].role",
        "wrong type",
    ),
    (
        "pairs",
        {"chosen": "\n\nHuman: hi\n\nAssistant: ", "rejected": "\n\nHuman: hi\n\nAssistant: yo"},
        "chosen",
        "empty text",
    ),
    (
        "pairs",
        {"chosen": "\n\nHuman: hi\n\nAssistant: yo", "rejected": "\n\nHuman: hi\n\nAssistant: yo"},
        "rejected",
        "identical chosen and rejected",
    ),
    (
        "pairs",
        {"chosen": "\n\nHuman: hi\n\nAssistant: yo", "rejected": "\n\nHuman: bye\n\nAssistant: no"},
        "rejected",
        "no common prompt",
    ),
    ("pairs", {"prompt": "p", "completion": "c", "label": False}, "label", "unsupported format"),
    ("rankings", {"prompt": "p", "responses": ["only"]}, "responses", "too few responses"),
    ("rankings", {"prompt": "p", "responses": []}, "responses", "too few responses"),
    ("rankings", {"prompt": "p", "responses": ["a", "b", "a "]}, "responses[2]", "duplicate responses"),
    ("rankings", {"prompt": "p", "responses": ["a", ""]}, "responses[1]", "empty text"),
    ("rankings", {"prompt": "p", "responses": "a, b"}, "responses", "wrong type"),
    ("ratings", {"prompt": "p", "response": "r"}, "rating", "missing field"),
    ("ratings", {"prompt": "p", "response": "r", "rating": "high"}, "rating", "wrong type"),
    ("ratings", {"prompt": "p", "response": "r", "rating": True}, "rating", "wrong type"),
    ("ratings", {"prompt": "p", "response": "r", "rating": 8}, "rating", "rating outside scale"),
    ("ratings", {"prompt": "p", "response": "r", "rating": 0.5}, "rating", "rating outside scale"),
    ("ratings", {"prompt": "p", "response": "r", "rating": 6, "scale": [1, 5]}, "rating", "rating outside scale"),
    ("ratings", {"prompt": "p", "response": "r", "rating": 3, "scale": [5, 1]}, "scale", "invalid scale"),
    ("ratings", {"prompt": "p", "response": "r", "rating": 3, "scale": 5}, "scale", "invalid scale"),
    (
        "ratings",
        {"prompt": "p", "response": "r", "rating": 3, "aspects": {"tone": "nice"}},
        "aspects.tone",
        "wrong type",
    ),
    ("ratings", {"prompt": "p", "response": "r", "rating": 3, "aspects": [1]}, "aspects", "wrong type"),
]


@pytest.mark.parametrize("kind, row, field, reason", CASES)
def test_invalid_row_names_file_line_and_field(write_rows, kind, row, field, reason):
    # A valid row, a blank line (ignored but counted), then the bad row on line 3.
    path = write_rows([VALID[kind], "", row])
    with pytest.raises(DataError) as err:
        load_records(path, kind)
    assert (err.value.path, err.value.line, err.value.field, err.value.reason) == (str(path), 3, field, reason)
    assert str(err.value).startswith(f"{path}:3: field '{field}': ")


@pytest.mark.parametrize("kind, row, field, reason", CASES)
def test_skip_invalid_lists_the_same_error(write_rows, kind, row, field, reason):
    path = write_rows([VALID[kind], "", row])
    result = load_records(path, kind, skip_invalid=True)
    assert len(result.records) == 1
    [skipped] = result.skipped
    assert (skipped.path, skipped.line, skipped.field, skipped.reason) == (str(path), 3, field, reason)


def test_rating_scale_argument_applies_to_rows_without_scale(write_rows):
    path = write_rows([{"prompt": "p", "response": "r", "rating": 9}])
    assert load_records(path, "ratings", rating_scale=(0, 10)).records[0].rating == 9.0
    with pytest.raises(DataError) as err:
        load_records(path, "ratings", rating_scale=(1, 5))
    assert err.value.field == "rating" and "[1, 5]" in err.value.message


def test_invalid_json_line(write_rows):
    path = write_rows([VALID["pairs"], '{"prompt": "p", "chosen": ', VALID["pairs"]])
    with pytest.raises(DataError) as err:
        load_records(path, "pairs")
    assert (err.value.line, err.value.field, err.value.reason) == (2, "<json>", "invalid JSON")


def test_json_line_that_is_not_an_object(write_rows):
    with pytest.raises(DataError) as err:
        load_records(write_rows([VALID["demos"], "[1, 2]"]), "demos")
    assert (err.value.line, err.value.field) == (2, "<json>")


def test_error_message_format_and_pickling():
    err = DataError("a.jsonl", 7, "chosen", "empty text", reason="empty text")
    assert str(err) == "a.jsonl:7: field 'chosen': empty text"
    assert isinstance(err, ValueError)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.path, copy.line, copy.field, copy.message, copy.reason) == (
        "a.jsonl",
        7,
        "chosen",
        "empty text",
        "empty text",
    )


def test_bad_arguments_are_value_errors(write_rows):
    path = write_rows([VALID["prompts"]])
    with pytest.raises(ValueError, match="unknown record kind"):
        load_records(path, "pears")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit"):
        load_records(path, "prompts", limit=-1)
    with pytest.raises(ValueError, match="rating_scale"):
        load_records(path, "ratings", rating_scale=(5, 1))

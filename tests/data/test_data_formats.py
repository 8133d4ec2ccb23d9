"""Every accepted row format, each with a tiny inline example, and the kind conversions."""

from __future__ import annotations

import pytest

from rlhfkit.data import (
    Comparison,
    DataError,
    Demonstration,
    Prompt,
    Ranking,
    Rating,
    load_records,
    to_json,
)
from rlhfkit.data.formats import FORMATS, detect_format

USER = {"role": "user", "content": "Hi!"}
SYSTEM = {"role": "system", "content": "Be brief."}


def one(write_rows, row, kind, **kwargs):
    result = load_records(write_rows([row]), kind, **kwargs)
    assert len(result.records) == 1 and not result.skipped
    return result.records[0]


# ---- rlhfkit canonical -------------------------------------------------------------------------


def test_canonical_prompt_text_and_conversation(write_rows):
    assert one(write_rows, {"prompt": "Say hi."}, "prompts") == Prompt("Say hi.")
    assert one(write_rows, {"prompt": [SYSTEM, USER]}, "prompts") == Prompt([SYSTEM, USER])


def test_canonical_demo(write_rows):
    assert one(write_rows, {"prompt": "Say hi.", "response": "Hi!"}, "demos") == Demonstration("Say hi.", "Hi!")


def test_canonical_pair_with_margin_and_tie(write_rows):
    row = {"prompt": "p", "chosen": "good", "rejected": "bad", "margin": 2, "tie": True}
    assert one(write_rows, row, "pairs") == Comparison("p", "good", "bad", margin=2.0, tie=True)
    plain = one(write_rows, {"prompt": "p", "chosen": "good", "rejected": "bad"}, "pairs")
    assert plain.margin is None and plain.tie is False


def test_canonical_conversation_prompt_with_text_responses(write_rows):
    # rlhfkit's canonical form: the prompt may be a conversation, responses are always text.
    row = {"prompt": [SYSTEM, USER], "chosen": "Hello!", "rejected": "What."}
    assert one(write_rows, row, "pairs") == Comparison([SYSTEM, USER], "Hello!", "What.")
    assert one(write_rows, {"prompt": [USER], "response": "Hello!"}, "demos") == Demonstration([USER], "Hello!")


def test_canonical_ranking(write_rows):
    row = {"prompt": "p", "responses": ["best", "middle", "worst"]}
    assert one(write_rows, row, "rankings") == Ranking("p", ("best", "middle", "worst"))


def test_canonical_rating_with_scale_and_aspects(write_rows):
    row = {"prompt": "p", "response": "r", "rating": 4, "scale": [0, 10], "aspects": {"clarity": 3.5}}
    assert one(write_rows, row, "ratings") == Rating("p", "r", 4.0, (0.0, 10.0), {"clarity": 3.5})
    default = one(write_rows, {"prompt": "p", "response": "r", "rating": 7}, "ratings")
    assert default.scale == (1.0, 7.0) and default.aspects is None
    declared = one(write_rows, {"prompt": "p", "response": "r", "rating": 0.5}, "ratings", rating_scale=(0, 1))
    assert declared.scale == (0.0, 1.0)


def test_canonical_round_trip_through_to_json(write_rows):
    records = [
        (Comparison("p", "a", "b", margin=1.5), "pairs"),
        (Ranking([USER], ("x", "y")), "rankings"),
        (Rating("p", "r", 3.0, (1.0, 5.0), {"tone": 2.0}), "ratings"),
    ]
    for record, kind in records:
        assert one(write_rows, to_json(record), kind) == record


# ---- TRL standard formats ----------------------------------------------------------------------


def test_trl_prompt_completion_text(write_rows):
    row = {"prompt": "The sky is", "completion": " blue."}
    assert one(write_rows, row, "demos") == Demonstration("The sky is", " blue.")


def test_trl_language_modeling_is_a_demo_with_empty_prompt(write_rows):
    assert one(write_rows, {"text": "The sky is blue."}, "demos") == Demonstration("", "The sky is blue.")
    with pytest.raises(DataError) as err:
        load_records(write_rows([{"text": "The sky is blue."}]), "prompts")
    assert err.value.field == "prompt" and "language modeling" in err.value.message


def test_trl_explicit_preference_text(write_rows):
    row = {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."}
    assert one(write_rows, row, "pairs") == Comparison("The sky is", " blue.", " green.")


def naive_common_prefix(a: str, b: str) -> str:
    out = ""
    for x, y in zip(a, b, strict=True):
        if x != y:
            break
        out += x
    return out


@pytest.mark.parametrize(
    "chosen, rejected",
    [("The sky is blue.", "The sky is green."), ("Yes, gladly: 2+2=4", "Yes, gladly: 2+2=5"), ("ab1", "abc")],
)
def test_trl_implicit_prompt_preference(write_rows, chosen, rejected):
    record = one(write_rows, {"chosen": chosen, "rejected": rejected}, "pairs")
    prefix = naive_common_prefix(chosen, rejected)
    assert record == Comparison(prefix, chosen[len(prefix) :], rejected[len(prefix) :])


def test_trl_implicit_prompt_preference_hand_example(write_rows):
    # "The sky is " is shared (11 characters); the answers start at the 'b' / 'g'.
    record = one(write_rows, {"chosen": "The sky is blue.", "rejected": "The sky is green."}, "pairs")
    assert (record.prompt, record.chosen, record.rejected) == ("The sky is ", "blue.", "green.")


def test_trl_unpaired_preference_is_rejected_by_name(write_rows):
    path = write_rows([{"prompt": "p", "completion": "c", "label": True}])
    for kind in ("pairs", "demos"):
        with pytest.raises(DataError) as err:
            load_records(path, kind)
        assert (err.value.line, err.value.field) == (1, "label")
        assert "unpaired preference" in err.value.message


# ---- TRL conversational formats ----------------------------------------------------------------


def test_conversational_messages_demo(write_rows):
    messages = [
        SYSTEM,
        USER,
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Goodbye!"},
    ]
    record = one(write_rows, {"messages": messages}, "demos")
    assert record == Demonstration(messages[:4], "Goodbye!")


def test_conversational_prompt_completion(write_rows):
    row = {"prompt": [USER], "completion": [{"role": "assistant", "content": "Hello!"}]}
    assert one(write_rows, row, "demos") == Demonstration([USER], "Hello!")


def test_conversational_explicit_preference(write_rows):
    row = {
        "prompt": [SYSTEM, USER],
        "chosen": [{"role": "assistant", "content": "Hello!"}],
        "rejected": [{"role": "assistant", "content": "What."}],
    }
    assert one(write_rows, row, "pairs") == Comparison([SYSTEM, USER], "Hello!", "What.")


def test_conversational_implicit_preference(write_rows):
    shared = [USER, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Joke?"}]
    row = {
        "chosen": [*shared, {"role": "assistant", "content": "Knock knock."}],
        "rejected": [*shared, {"role": "assistant", "content": "No."}],
    }
    assert one(write_rows, row, "pairs") == Comparison(shared, "Knock knock.", "No.")


def test_messages_keep_only_role_and_content(write_rows):
    row = {
        "messages": [
            {"role": "user", "content": "Hi", "name": "ann"},
            {"role": "assistant", "content": "Yo", "tool_calls": None},
        ]
    }
    assert one(write_rows, row, "demos").prompt == [{"role": "user", "content": "Hi"}]


# ---- HH-RLHF dialogue --------------------------------------------------------------------------

HH_PROMPT = "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a fun fact."


def test_hh_dialogue(write_rows):
    row = {
        "chosen": HH_PROMPT + "\n\nAssistant: Octopuses have three hearts.",
        "rejected": HH_PROMPT + "\n\nAssistant: No.",
    }
    record = one(write_rows, row, "pairs")
    assert record == Comparison(
        [
            {"role": "user", "content": "Hi there"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Tell me a fun fact."},
        ],
        "Octopuses have three hearts.",
        "No.",
    )


def test_hh_dialogue_edge_cases(write_rows):
    # Two Assistant turns in a row stay two messages; a reply that runs on into a fake next turn stays
    # whole (the split point is inside the shared prefix); a missing leading blank line is tolerated.
    prompt = "Human: Hi\n\nAssistant: One moment.\n\nAssistant: Here I am.\n\nHuman: Great"
    row = {
        "chosen": prompt + "\n\nAssistant: Sure.\n\nAssistant: Also this.",
        "rejected": prompt + "\n\nAssistant: Sure thing.  Human: and more",
    }
    record = one(write_rows, row, "pairs")
    assert [m["role"] for m in record.prompt] == ["user", "assistant", "assistant", "user"]
    assert record.chosen == "Sure.\n\nAssistant: Also this."
    assert record.rejected == "Sure thing.  Human: and more"


def test_hh_detection_needs_dialogue_markers():
    assert detect_format({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "x"}).name == "HH-RLHF dialogue"
    assert detect_format({"chosen": "Human rights matter.", "rejected": "Human rights?"}).name == (
        "implicit-prompt preference"
    )


# ---- conversions -------------------------------------------------------------------------------


def test_pairs_load_as_chosen_demos_and_as_prompts(write_rows):
    row = {"prompt": "p", "chosen": "good", "rejected": "bad"}
    assert one(write_rows, row, "demos") == Demonstration("p", "good")
    assert one(write_rows, row, "prompts") == Prompt("p")


@pytest.mark.parametrize(
    "row",
    [
        {"prompt": "p", "response": "r"},
        {"prompt": "p", "completion": "c"},
        {"messages": [USER, {"role": "assistant", "content": "Yo"}]},
        {"prompt": "p", "responses": ["a", "b"]},
        {"prompt": "p", "response": "r", "rating": 3},
    ],
)
def test_any_kind_loads_as_prompts(write_rows, row):
    expected = [USER] if "messages" in row else "p"
    assert one(write_rows, row, "prompts") == Prompt(expected)


@pytest.mark.parametrize(
    "row, kind, field",
    [
        ({"prompt": "p", "responses": ["a", "b"]}, "pairs", "chosen"),
        ({"prompt": "p", "response": "r", "rating": 3}, "pairs", "chosen"),
        ({"prompt": "p", "response": "r", "rating": 3}, "demos", "rating"),
        ({"prompt": "p", "responses": ["a", "b"]}, "demos", "response"),
        ({"prompt": "p", "chosen": "a", "rejected": "b"}, "rankings", "responses"),
        ({"prompt": "p", "response": "r"}, "ratings", "rating"),
    ],
)
def test_ambiguous_conversions_are_refused(write_rows, row, kind, field):
    with pytest.raises(DataError) as err:
        load_records(write_rows([row]), kind)
    assert (err.value.line, err.value.field) == (1, field)


def test_rating_row_as_demos_names_the_unsupported_conversion(write_rows):
    with pytest.raises(DataError) as err:
        load_records(write_rows([{"prompt": "p", "response": "r", "rating": 3}]), "demos")
    assert err.value.reason == "unsupported conversion" and "loads as ratings or prompts" in err.value.message


def test_mixed_formats_in_one_file(write_rows):
    rows = [
        {"prompt": "a", "chosen": "x", "rejected": "y"},
        {
            "chosen": [USER, {"role": "assistant", "content": "x"}],
            "rejected": [USER, {"role": "assistant", "content": "y"}],
        },
        {"chosen": "\n\nHuman: a\n\nAssistant: x", "rejected": "\n\nHuman: a\n\nAssistant: y"},
    ]
    records = load_records(write_rows(rows), "pairs").records
    assert [(r.chosen, r.rejected) for r in records] == [("x", "y")] * 3
    assert [r.source.line for r in records] == [1, 2, 3]


def test_format_table_names_match_keys():
    assert list(FORMATS) == [fmt.name for fmt in FORMATS.values()]
    assert detect_format({"unknown": 1}) is None

"""Prompts, the action parser (variants and fuzzing), the action boundary, the oracle's responses."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmagent.envs import ACTIONS, CARD_ENVS, ENV_IDS, make_env
from vlmagent.prompts import (
    action_char_start,
    action_token_start,
    build_prompt,
    corpus_texts,
    facts_only,
    facts_prompt,
    oracle_response,
    parse,
)

NL, BJ, EZ, P24 = ACTIONS["numberline"], ACTIONS["blackjack"], ACTIONS["ezpoints"], ACTIONS["points24"]


# --- prompts --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CARD_ENVS)
def test_prompts(name):
    state = "Formula: 3+4" if name in ("ezpoints", "points24") else ""
    cot, plain = build_prompt(name, True, state), build_prompt(ENV_IDS[name], False, state)
    for prompt in (cot, plain):
        assert all(f"'{a}'" in prompt for a in ACTIONS[name])  # the choices are listed
        assert '"action":' in prompt and state in prompt
    assert '"thoughts":' in cot and '"thoughts"' not in plain
    assert len(plain) < len(cot)
    with pytest.raises(ValueError):
        build_prompt("pong", True)


# --- parse ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("actions", "text", "expected"),
    [
        (NL, '{"action": "+"}', "+"),
        (NL, '{\n  "thoughts": "2 < 4, so - is wrong",\n  "action": "+"\n}', "+"),
        (NL, "{'action': '-'}", "-"),
        (NL, "action: +", "+"),
        (NL, '"Action" :   "-".', "-"),
        (NL, '"ACTION":"+"}', "+"),
        (NL, '"action": "-" or "+"', None),  # the format copied: two actions
        (NL, '"action": ""', None),
        (NL, '"action": ', None),  # cut off by the token limit
        (NL, "+", "+"),  # no key: the whole text
        (NL, "I will add one: +", None),  # no action key: a legal string in free text is not an answer
        (NL, "the reaction: -", None),  # "reaction" is not the key
        (NL, " + ", "+"),  # a bare exact answer is one
        (NL, '"action": "+1"', "+"),  # 1 is not a NumberLine action
        (NL, '"action": "-"\n}\nI moved - because - and +', "-"),  # only the action line counts
        (BJ, '"action": "Hit"', "hit"),
        (BJ, '"action": "STAND".', "stand"),
        (BJ, '"action": "I will hit"', "hit"),
        (BJ, '"action": "white"', None),  # not a whole token
        (BJ, '"action": "hit or stand"', None),
        (BJ, '"thoughts": "the action: stand is bad", "action": "hit"', "hit"),  # the last key wins
        (EZ, '"action": "10"', "10"),
        (EZ, '"action": "1"', "1"),
        (EZ, '"action": 10}', "10"),  # unquoted number
        (EZ, '"action": "12"', None),  # not a legal number, and not "1" + "2"
        (EZ, '"action": "10+"', None),
        (EZ, '"action": "{*}"', "*"),
        (P24, '"action": "("', "("),
        (P24, '"action": ")",', ")"),
        (P24, '"action": "="}', "="),
        (P24, '"action": "/"', "/"),
        (P24, '"action": "(3"', None),
        (P24, '"action": \u201c-\u201d', "-"),  # curly quotes
        (P24, "", None),
    ],
)
def test_parse_variants(actions, text, expected):
    assert parse(actions, text) == (expected, expected is not None)


def test_parse_multiword_actions_prefer_the_longest_match():
    actions = ["go to cabinet 1", "go to cabinet 10", "look"]
    assert parse(actions, '"action": "Go to cabinet 10"') == ("go to cabinet 10", True)
    assert parse(actions, '"action": "I go to cabinet 10 now"') == ("go to cabinet 10", True)
    assert parse(actions, '"action": "go to cabinet 1 and look"') == (None, False)


def test_parse_bad_inputs():
    assert parse([], '"action": "+"') == (None, False)
    assert parse(NL, None) == (None, False)  # type: ignore[arg-type]


ACTION_SETS = [NL, BJ, EZ, P24, ["go to cabinet 1", "go to cabinet 10"]]
_FRAGMENTS = st.sampled_from(
    [
        '"action"',
        "action",
        ":",
        '"',
        "'",
        "{",
        "}",
        "\n",
        " ",
        ".",
        "10",
        "1",
        "+",
        "-",
        "(",
        "hit",
        "stand",
        "=",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    actions=st.sampled_from(ACTION_SETS),
    text=st.text() | st.lists(_FRAGMENTS | st.text(max_size=3)).map("".join),
)
def test_parse_fuzz_never_raises(actions, text):
    action, ok = parse(actions, text)
    assert (ok and action in actions) or (not ok and action is None)
    offsets = [(i, i + 1) for i in range(len(text))]  # one token per char
    start = action_char_start(text)
    assert action_token_start(text, offsets) == (0 if start is None else start)


@settings(max_examples=200, deadline=None)
@given(
    actions=st.sampled_from(ACTION_SETS),
    index=st.integers(0, 100),
    prefix=st.text(max_size=40),
    quote=st.sampled_from(['"', "'", ""]),
    tail=st.sampled_from(["", "}", ".", "\n}", '"}', "\n}\n\nanything + - hit 1"]),
)
def test_parse_fuzz_finds_a_well_formed_action(actions, index, prefix, quote, tail):
    action = actions[index % len(actions)]
    text = f"{prefix}\n{quote}action{quote}: {quote}{action}{quote}{tail}"
    assert parse(actions, text) == (action, True)


# --- the action boundary --------------------------------------------------------------------------
def test_action_char_start():
    text = '{"thoughts": "pick the action: +", "action": "+"}'
    assert action_char_start(text) == text.index('"action"')
    assert action_char_start("no key here") is None
    assert action_char_start("action: hit") == 0


def test_action_token_start_on_hand_made_offsets():
    text = '{"thoughts": "x", "action": "+"}'
    start = text.index('"action"')  # 18
    # tokens: '{"', 'thoughts', '": "', 'x', '",', ' "', 'action', '":', ' "+', '"}'
    offsets = [
        (0, 2),
        (2, 10),
        (10, 14),
        (14, 15),
        (15, 17),
        (17, 19),
        (19, 25),
        (25, 27),
        (27, 30),
        (30, 32),
    ]
    assert start == 18
    assert action_token_start(text, offsets) == 5  # ' "' spans 17..19 and holds the key's quote
    # a token that ends exactly at the key does not belong to the action part
    offsets = [(0, 18), (18, 26), (26, 32)]
    assert action_token_start(text, offsets) == 1
    assert action_token_start("just + please", [(0, 4), (4, 6), (6, 13)]) == 0  # no key: all action
    assert action_token_start(text, [(0, 5)]) == 1  # offsets that stop early: nothing is CoT past them


# --- the oracle's responses -----------------------------------------------------------------------
@pytest.mark.parametrize("name", CARD_ENVS)
def test_oracle_response_parses_to_the_oracle_action(name):
    env = make_env(name, image_size=64)
    for seed in range(25):
        env.reset(seed=seed)
        done = False
        while not done:
            u = env.unwrapped
            expected = u.actions[u.oracle_action()]
            for cot in (True, False):
                text = oracle_response(name, env, cot)
                assert parse(u.actions, text) == (expected, True)
                fields = json.loads(text)  # it is valid JSON
                assert list(fields)[-1] == "action" and ("thoughts" in fields) == cot
                assert text[action_char_start(text) :].startswith('"action"')
            _, _, terminated, truncated, _ = env.step(u.oracle_action())
            done = terminated or truncated


def test_oracle_response_reasoning():
    env = make_env("points24", image_size=64)
    env.reset(seed=0)
    env.unwrapped.cards = [("3", "S"), ("3", "H"), ("8", "D"), ("8", "C")]
    thoughts = json.loads(oracle_response("points24", env, True))["thoughts"]
    assert "8/(3-8/3) = 24" in thoughts and "3-(8/3) = 1/3" in thoughts
    # the same deal in another order writes the same sorted key and the same solution
    assert "Largest first: 8, 8, 3, 3." in thoughts
    env.unwrapped.cards = [("8", "S"), ("3", "H"), ("8", "D"), ("3", "C")]
    reordered = json.loads(oracle_response("points24", env, True))["thoughts"]
    assert reordered.split("Largest first")[1] == thoughts.split("Largest first")[1]
    env.unwrapped.cards = [("A", "S"), ("A", "H"), ("A", "D"), ("A", "C")]
    assert "No formula" in json.loads(oracle_response("points24", env, True))["thoughts"]
    env = make_env("ezpoints", image_size=64)  # two cards: no sorted key
    env.reset(seed=0)
    assert "Largest first" not in json.loads(oracle_response("ezpoints", env, True))["thoughts"]

    env = make_env("blackjack", image_size=64)
    env.reset(seed=0)
    env.unwrapped.player, env.unwrapped.dealer = [("A", "S"), ("7", "H")], [("9", "D"), ("2", "C")]
    fields = json.loads(oracle_response("blackjack", env, True))
    assert fields["action"] == "hit" and "soft 18" in fields["thoughts"]
    assert fields["dealer card"] == "9" and fields["player cards"] == ["A", "7"]


def test_corpus_texts():
    texts = corpus_texts(n_episodes=3, seed=0)
    assert texts == corpus_texts(n_episodes=3, seed=0)
    assert all(isinstance(t, str) and t for t in texts)
    joined = "\n".join(texts)
    for word in ("number line", "blackjack", "24", '"thoughts"', '"action"', "Formula:"):
        assert word in joined


@pytest.mark.parametrize("name", CARD_ENVS)
def test_facts_only_keeps_what_the_image_shows(name):
    """The reading warm-up's target: the oracle's fields before "thoughts", as JSON, nothing after."""
    env = make_env(name, image_size=64)
    env.reset(seed=3)
    full = json.loads(oracle_response(name, env, cot=True))
    facts = json.loads(facts_only(oracle_response(name, env, cot=True)))
    keys = list(full)
    assert list(facts) == keys[: keys.index("thoughts")] and len(facts) == 2
    assert all(facts[k] == full[k] for k in facts)
    assert facts_only(oracle_response(name, env, cot=False)) is None  # no CoT: nothing read out
    assert facts_only('{"cards": ["3"], "action": "3"}') is None  # no "thoughts": no known facts
    assert facts_only("not json {") is None


@pytest.mark.parametrize("name", CARD_ENVS)
def test_facts_prompt_asks_for_the_facts_in_few_words(name):
    env = make_env(name, image_size=64)
    env.reset(seed=3)
    short, task = facts_prompt(name), build_prompt(name, True, env.unwrapped.state_text())
    facts = json.loads(facts_only(oracle_response(name, env, cot=True)))
    assert all(f'"{key}":' in short for key in facts) and '"thoughts"' not in short
    assert len(short) < len(task) / 2
    with pytest.raises(ValueError, match="no image facts"):
        facts_prompt("alfworld")

"""Task prompts, the response format, the action parser, and the oracle's responses (SFT data).

The response is a JSON-like object: with CoT the facts read from the image, "thoughts", then "action";
without CoT only "action". The parser reads the text after the last "action" key; the part of the
response from that key on is the action part (its tokens get full weight in the action log-prob, the
CoT tokens before it are scaled by cot_lambda; vlmagent/ppo.py).
"""

import json
import re
from collections.abc import Sequence
from functools import lru_cache

import gymnasium as gym

from vlmagent.envs import ACTIONS, CARD_ENVS, env_class, env_name, formula, make_env
from vlmagent.envs.blackjack import basic_strategy, hand_total
from vlmagent.envs.cards import card_value

_QUOTES = "\"'`\u201c\u201d\u2018\u2019"
# The "action" key, tolerant of missing/single/curly quotes, case and spacing; \b keeps "reaction:" out.
_ACTION_KEY = re.compile(rf"[{_QUOTES}]?\baction\b[{_QUOTES}]?\s*:", re.IGNORECASE)
# What may wrap a value: quotes, braces, brackets, a trailing period or comma, spaces.
_WRAPPING = _QUOTES + "{}[].,;: \t\r\n"

_TASKS = {
    "numberline": (
        "You are playing a game called number line. You will see a target number and a current number in "
        "the image. Your goal is to move the current number closer to the target by choosing either adding "
        "or subtracting one to the current number."
    ),
    "blackjack": (
        "You are a blackjack player. You are observing the current game state in the image: the dealer's "
        "face-up card, the dealer's face-down card, and your cards. Your goal is to beat the dealer: get a "
        "total closer to 21 than the dealer without going over 21. Aces count 1 or 11, and J, Q and K count "
        "10. 'hit' takes one more card, 'stand' ends your turn and the dealer draws until 17 or more."
    ),
    "ezpoints": (
        "You are an expert card game player. You are observing two cards in the image, and the formula "
        "built so far under them."
    ),
    "points24": (
        "You are an expert 24 points card game player. You are observing four cards in the image, and the "
        "formula built so far under them."
    ),
}

_FORMULA_RULES = (
    "The number or operator you choose will be appended to the current formula. Note that 'J', 'Q' and "
    "'K' count as '10', and 'A' counts as '1'. Your goal is to output a formula that evaluates to {target}, "
    "using each card's number exactly once. When the formula is complete, choose '=' to submit it."
)

# CoT fields before "thoughts": (key, placeholder shown in the prompt)
_FACTS = {
    "numberline": [("current number", "x"), ("target number", "y")],
    "blackjack": [("dealer card", '"x"'), ("player cards", '["x", "y"]')],
    "ezpoints": [("cards", '["x", "y"]'), ("current formula", '"z"')],
    "points24": [("cards", '["x", "y", "z", "w"]'), ("current formula", '"z"')],
}
_THOUGHTS = {
    "numberline": "first read out the current and target number, then think carefully about which action to choose",
    "blackjack": "first describe your total points and the dealer's card, then think about which action to choose",
    "ezpoints": (
        "first check whether the current formula is complete and equals 12. If so, choose '='. Otherwise "
        "consider which number or operator should be appended to make it equal 12"
    ),
    "points24": (
        "first check whether the current formula is complete and equals 24. If so, choose '='. Otherwise "
        "consider which number or operator should be appended to make it equal 24"
    ),
}
_ACTION_FORMAT = {
    "numberline": '"-" or "+"',
    "blackjack": '"stand" or "hit"',
    "ezpoints": '"a number or an operator"',
    "points24": '"a number or an operator"',
}


def build_prompt(env_name_or_id: str, cot: bool, state_text: str = "") -> str:
    """The task text (no chat template): task, state text (e.g. "Formula: 3+4"), choices, output format."""
    name = env_name(env_name_or_id)
    if (cls := env_class(name)).own_prompt:
        return cls.prompt(state_text, cot)
    parts = [_TASKS[name]]
    if state_text:
        parts.append(state_text)
    choices = ", ".join(f"'{a}'" for a in ACTIONS[name])
    parts.append(f"You can choose between [{choices}].")
    if name in ("ezpoints", "points24"):
        parts.append(_FORMULA_RULES.format(target=12 if name == "ezpoints" else 24))
    fields = [*_FACTS[name], ("thoughts", f'"{_THOUGHTS[name]}"')] if cot else []
    parts.append(_response_format([*fields, ("action", _ACTION_FORMAT[name])]))
    return "\n".join(parts)


def _response_format(fields: Sequence[tuple[str, str]]) -> str:
    """The prompt's last part: the JSON object to answer with, one (key, placeholder) per line."""
    body = ",\n".join(f'  "{key}": {placeholder}' for key, placeholder in fields)
    return f"Your response should be a valid JSON object in the following format:\n{{\n{body}\n}}"


# --- parsing ----------------------------------------------------------------------------------------
def action_char_start(text: str) -> int | None:
    """Char offset where the action part begins: the start of the last "action": key, None if absent."""
    if not isinstance(text, str):
        return None
    start = None
    for match in _ACTION_KEY.finditer(text):
        start = match.start()
    return start


def action_token_start(text: str, offsets: Sequence[tuple[int, int]]) -> int:
    """Index of the first response token of the action part, given each token's (start, end) char span:
    the first token whose span ends after the action key's first char. 0 when there is no action key
    (the whole response then counts as action tokens, full weight)."""
    start = action_char_start(text)
    if start is None:
        return 0
    for i, (_, end) in enumerate(offsets):
        if end > start:
            return i
    return len(offsets)


@lru_cache(maxsize=64)
def _action_patterns(actions: tuple[str, ...]) -> list[tuple[str, re.Pattern[str]]]:
    # Whole-token match: an action that starts (ends) with a letter or digit must not be glued to
    # another letter or digit, so "1" is not found inside "10" nor "hit" inside "white".
    patterns = []
    for action in actions:
        a = action.lower()
        if not a.strip():
            continue
        left = r"(?<![a-z0-9])" if a[0].isalnum() else ""
        right = r"(?![a-z0-9])" if a[-1].isalnum() else ""
        patterns.append((action, re.compile(left + re.escape(a) + right)))
    return patterns


def parse(actions: Sequence[str], text: str, numbered: bool = False) -> tuple[str | None, bool]:
    """The legal action a response names, as (action, True); (None, False) when it names none or several.

    Reads the value after the last "action" key (the whole text when there is no key). An exact,
    case-insensitive match of the value (without quotes, braces, a trailing period...) wins; with
    `numbered` (the prompt lists the actions as 1, 2, ...: ALFWorld) so does a whole number k naming
    actions[k - 1]; otherwise,
    after a key only, the legal actions found in the value as whole tokens decide, a match inside a
    longer match not counting. Without a key we accept only an exact answer: a legal string somewhere
    in free text is not an answer (and would reward babble). Never raises.
    """
    if not isinstance(text, str) or not actions:
        return None, False
    actions = [a for a in actions if isinstance(a, str)]
    legal = {" ".join(a.lower().split()): a for a in actions}
    keys = list(_ACTION_KEY.finditer(text))
    value = text[keys[-1].end() :].lstrip().split("\n", 1)[0] if keys else text
    for candidate in (value.strip(), value.strip(_WRAPPING)):
        normalised = " ".join(candidate.lower().split())
        if normalised in legal:
            return legal[normalised], True
        if numbered and normalised.isdigit() and 1 <= int(normalised) <= len(actions):
            return actions[int(normalised) - 1], True
    if not keys:
        return None, False
    lowered = value.lower()
    patterns = _action_patterns(tuple(actions))
    spans = [(m.start(), -m.end(), a) for a, p in patterns for m in p.finditer(lowered)]
    found, reach = set(), -1
    for _, neg_end, action in sorted(spans):  # by start, longest first: a match inside another is skipped
        if -neg_end > reach:
            found.add(action)
            reach = -neg_end
    if len(found) == 1:
        return found.pop(), True
    return None, False


# --- the oracle's responses -------------------------------------------------------------------------
def _json(fields: dict) -> str:
    return "{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in fields.items()) + "\n}"


def _numberline_facts(env: gym.Env, action: str) -> dict:
    c, t = env.current, env.target
    if c == t:
        thoughts = f"The current number {c} already equals the target {t}."
    else:
        side, move = ("smaller", "adding one") if c < t else ("larger", "subtracting one")
        step = c + 1 if c < t else c - 1
        thoughts = (
            f"The current number {c} is {side} than the target {t}, so {move} moves it to {step}, "
            f"{abs(step - t)} away from the target instead of {abs(c - t)}. The action is {action}."
        )
    return {"current number": c, "target number": t, "thoughts": thoughts}


def _blackjack_facts(env: gym.Env, action: str) -> dict:
    ranks = [rank for rank, _ in env.player]
    total, soft = hand_total(env.player)
    up = env.dealer[0][0]
    up_value = 11 if up == "A" else card_value(up)
    _, rule = basic_strategy(total, soft, up_value)
    hand = f"a soft {total} (an ace counts 11)" if soft else f"a hard {total}"
    thoughts = (
        f"My cards are {', '.join(ranks)}: {hand}. The dealer shows {up}, worth {up_value}. "
        f"By basic strategy {rule}, so I {action}."
    )
    return {"dealer card": up, "player cards": ranks, "thoughts": thoughts}


def _formula_facts(env: gym.Env, action: str) -> dict:
    ranks, values, target = [rank for rank, _ in env.cards], env.values(), env.target
    current = "".join(env.formula)
    notes = [f"{r} counts as {v}" for r, v in zip(ranks, values, strict=True) if r in ("A", "J", "Q", "K")]
    counted = f" ({', '.join(dict.fromkeys(notes))})" if notes else ""
    numbers = ", ".join(str(v) for v in values)
    thoughts = [f"The cards are {', '.join(ranks)}{counted}, so the numbers are {numbers}."]
    if len(values) > 2:
        # The solver's solution depends only on the sorted numbers: written out, they are the same
        # key for all 24 orders of a deal's cards, which a small model learns from far fewer demos.
        thoughts.append(f"Largest first: {', '.join(str(v) for v in sorted(values, reverse=True))}.")
    solution = env.oracle_solution()
    if solution is None and env.solvable():
        thoughts.append(
            f"The formula {current} cannot be completed to equal {target} with the numbers left, so I submit it with =."
        )
    elif solution is None:
        thoughts.append(f"No formula with + - * / and parentheses makes {target} from them, so I end with =.")
    elif solution == env.formula:
        thoughts.append(
            f"The formula {current} uses every number once and equals {target}: it is complete, so =."
        )
    else:
        steps: list[str] = []
        formula.evaluate(solution, trace=steps)
        plan = f"{''.join(solution)} = {target} uses every number once"
        plan += f": {', '.join(steps)}." if len(steps) > 1 else "."
        if current:
            thoughts.append(f"{plan} The formula {current} is its start, so I go on with {action}.")
        else:
            thoughts.append(f"{plan} The formula is empty, so I start with {action}.")
    return {"cards": ranks, "current formula": current, "thoughts": " ".join(thoughts)}


_FACT_WRITERS = {
    "numberline": _numberline_facts,
    "blackjack": _blackjack_facts,
    "ezpoints": _formula_facts,
    "points24": _formula_facts,
}


def oracle_response(env_name_or_id: str, env: gym.Env, cot: bool) -> str:
    """The response in the prompt's format for the env's current state; parse() of it gives the oracle's
    action. With CoT: the facts in the image, a short deterministic reasoning, then the action."""
    name, env = env_name(env_name_or_id), env.unwrapped
    if env.own_prompt:
        return env.oracle_response(cot)
    action = env.actions[env.oracle_action()]
    fields = _FACT_WRITERS[name](env, action) if cot else {}
    return _json(fields | {"action": action})


def facts_only(response: str) -> str | None:
    """A CoT response cut to what it reads off the image (its fields before "thoughts"), still a JSON
    object; None when the response is not such an object or has no such field. The target of a reading
    warm-up (`vlmagent sft --facts-only`): the card tasks' image facts get the whole gradient."""
    try:
        fields = json.loads(response)
    except (json.JSONDecodeError, TypeError, RecursionError):  # RecursionError: deeply nested JSON
        return None
    if not isinstance(fields, dict) or "thoughts" not in fields:
        return None
    keys = list(fields)
    facts = {k: fields[k] for k in keys[: keys.index("thoughts")]}
    return _json(facts) if facts else None


def facts_prompt(env_name_or_id: str) -> str:
    """A short prompt that asks only for the image facts, in the CoT's format: the reading warm-up's
    first half (see `stages.sft`)."""
    name = env_name(env_name_or_id)
    if name not in _FACTS:
        raise ValueError(f"{name} has no image facts to read (card tasks only)")
    return f"Read the image. {_response_format(_FACTS[name])}"


def corpus_texts(n_episodes: int = 20, seed: int = 0) -> list[str]:
    """Prompts and oracle responses (CoT and not) along oracle episodes of all four envs, seeds
    seed..seed+n_episodes-1: text to train the tiny model's tokenizer on."""
    texts = []
    for name in CARD_ENVS:
        env = make_env(name, image_size=64)  # the images are not used: small is fast
        for episode in range(n_episodes):
            env.reset(seed=seed + episode)
            done = False
            while not done:
                state = env.unwrapped.state_text()
                for cot in (True, False):
                    texts += [build_prompt(name, cot, state), oracle_response(name, env, cot)]
                _, _, terminated, truncated, _ = env.step(env.unwrapped.oracle_action())
                done = terminated or truncated
        env.close()
    return texts

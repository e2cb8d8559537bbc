"""The four gym_cards envs: rules on hand-built states, seeding, the oracles, the solver, gymnasium's checker."""

import json
import re
import warnings
from fractions import Fraction
from itertools import combinations_with_replacement

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from vlmagent.envs import ACTIONS, CARD_ENVS, ENV_IDS, env_class, env_name, make_env
from vlmagent.envs.blackjack import basic_strategy, hand_total
from vlmagent.envs.formula import all_solutions, evaluate, numbers, solve

SMALL = 64  # image size for the long loops: the rules do not depend on it


def tokens(text: str) -> list[str]:
    """'10+(2*3)' -> ['10', '+', '(', '2', '*', '3', ')']; a space separates numbers: '6 2' -> ['6', '2']"""
    return re.findall(r"\d+|\S", text)


def play(env: gym.Env, moves: str | list[str]) -> list[tuple]:
    """Step the action strings (a formula string is split into tokens); returns the step results."""
    moves = tokens(moves) if isinstance(moves, str) else moves
    return [env.step(env.unwrapped.actions.index(m)) for m in moves]


def new(name: str, seed: int = 0, **kwargs) -> gym.Env:
    env = make_env(name, **kwargs)
    env.reset(seed=seed)
    return env


# --- registration, spaces, checker ----------------------------------------------------------------
@pytest.mark.parametrize("name", CARD_ENVS)
def test_registered_spaces_and_actions(name):
    expected = {
        "numberline": ["-", "+"],
        "blackjack": ["stand", "hit"],
        "ezpoints": [*map(str, range(1, 11)), "+", "*", "="],
        "points24": [*map(str, range(1, 11)), "+", "-", "*", "/", "(", ")", "="],
    }[name]
    for key in (name, ENV_IDS[name]):
        env = make_env(key, image_size=120)
        assert env.unwrapped.actions == expected == ACTIONS[name]
        assert env.action_space == gym.spaces.Discrete(len(expected))
        obs, info = env.reset(seed=1)
        assert obs.shape == (120, 120, 3) and obs.dtype == np.uint8
        assert env.observation_space.contains(obs)
        json.dumps(info)
    assert make_env(name).reset(seed=0)[0].shape == (300, 300, 3)


def test_unknown_env_names_the_known_ones():
    with pytest.raises(ValueError, match="numberline.*ezpoints.*points24.*blackjack"):
        make_env("cartpole")
    assert env_name("vlmagent/Points24-v0") == "points24"


def test_capabilities_are_class_attributes_read_without_making_an_env():
    """The stages ask an env what it can do, never its name: ALFWorld (whose class loads without its engine)
    judges raw text, reports success in its info, takes a games root and writes its own prompt."""
    capabilities = ("text_actions", "success_in_info", "takes_games_root", "own_prompt")
    for name in CARD_ENVS:
        assert not any(getattr(env_class(name), c) for c in capabilities), name
        assert env_class(ENV_IDS[name]) is type(make_env(name).unwrapped)
    for name in ("alfworld", "alfworld-heldout"):
        assert all(getattr(env_class(name), c) for c in capabilities), name


@pytest.mark.parametrize("name", CARD_ENVS)
def test_gymnasium_check_env(name):
    env = gym.make(ENV_IDS[name], image_size=96, render_mode="rgb_array").unwrapped
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checker warning is a failure
        check_env(env, skip_render_check=False)


# --- seeding --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CARD_ENVS)
def test_same_seed_same_episode(name):
    def episode(seed: int) -> tuple[list[np.ndarray], list[str]]:
        env = make_env(name, image_size=SMALL)
        obs, info = env.reset(seed=seed)
        frames, infos = [obs], [json.dumps(info)]
        rng = np.random.default_rng(seed)  # random actions: exercise more than the oracle's path
        for _ in range(30):
            obs, reward, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
            frames.append(obs)
            infos.append(json.dumps([reward, terminated, truncated, info]))
            if terminated or truncated:
                break
        return frames, infos

    for seed in (0, 7):
        (frames_a, infos_a), (frames_b, infos_b) = episode(seed), episode(seed)
        assert infos_a == infos_b
        assert all(np.array_equal(a, b) for a, b in zip(frames_a, frames_b, strict=True))
    # and different seeds give different deals
    starts = {json.dumps(make_env(name, image_size=SMALL).reset(seed=s)[1]) for s in range(20)}
    assert len(starts) > 3


# --- NumberLine -----------------------------------------------------------------------------------
def numberline(current: int, target: int, **kwargs) -> gym.Env:
    env = new("numberline", image_size=SMALL, **kwargs)
    env.unwrapped.current, env.unwrapped.target = current, target
    return env


def test_numberline_rules():
    ((_, r, term, trunc, info),) = play(numberline(2, 4), ["+"])
    assert (r, term, trunc, info["current"]) == (0.0, False, False, 3)
    ((_, r, term, _, _),) = play(numberline(2, 4), ["-"])
    assert (r, term) == (-1.0, False)
    ((_, r, term, trunc, info),) = play(numberline(3, 4), ["+"])
    assert (r, term, trunc, info["success"]) == (1.0, True, False, True)
    # bumping into a bound does not move and does not bring it closer
    ((_, r, _, _, info),) = play(numberline(0, 3), ["-"])
    assert (r, info["current"]) == (-1.0, 0)
    ((_, r, _, _, info),) = play(numberline(5, 1), ["+"])
    assert (r, info["current"]) == (-1.0, 5)


def test_numberline_start_differs_from_target_and_truncates():
    env = make_env("numberline", image_size=SMALL, max_position=7)
    for seed in range(200):
        _, info = env.reset(seed=seed)
        assert info["current"] != info["target"] and 0 <= info["current"] <= 7 and 0 <= info["target"] <= 7
    env = numberline(0, 5)
    results = play(env, ["-"] * 10)
    assert [r[3] for r in results] == [False] * 9 + [True]  # 2 x max_position steps
    assert results[-1][4]["success"] is False and sum(r[1] for r in results) == -10


# --- EZPoints -------------------------------------------------------------------------------------
def formula_env(name: str, ranks: list[str]) -> gym.Env:
    env = new(name, image_size=SMALL)
    env.unwrapped.cards = [(rank, "SHDC"[i % 4]) for i, rank in enumerate(ranks)]
    return env


def test_ezpoints_solved_with_a_face_card():
    env = formula_env("ezpoints", ["J", "2"])
    *steps, (_, r, term, trunc, info) = play(env, "10+2=")
    assert [s[1] for s in steps] == [0.0, 0.0, 0.0]
    assert (r, term, trunc, info["success"], info["formula"]) == (10.0, True, False, True, "10+2")
    assert env.unwrapped.state_text() == "Formula: 10+2"


def test_ezpoints_illegal_card_costs_one_and_lengthens_the_formula():
    env = formula_env("ezpoints", ["4", "3"])
    ((_, r, term, _, info),) = play(env, ["5"])  # no 5 on the table
    assert (r, term, info["formula"], info["length"]) == (-1.0, False, "", 1)
    play(env, ["4"])
    ((_, r, _, _, info),) = play(env, ["4"])  # the only 4 is used
    assert (r, info["formula"], info["length"]) == (-1.0, "4", 3)
    # the formula itself stays a valid prefix: finishing it still wins
    *_, (_, r, term, _, info) = play(env, "*3=")
    assert (r, term, info["success"]) == (10.0, True, True)


@pytest.mark.parametrize("moves", ["4+3=", "4=", "=", "4*=", "4**3="])
def test_ezpoints_wrong_or_incomplete_formula(moves):
    *_, (_, r, term, trunc, info) = play(formula_env("ezpoints", ["4", "3"]), moves)
    assert (r, term, trunc, info["success"]) == (-1.0, True, False, False)


def test_ezpoints_truncates_past_five():
    env = formula_env("ezpoints", ["4", "3"])
    results = play(env, "4*3+++")
    assert [r[3] for r in results] == [False] * 5 + [True]
    assert results[-1][1] == -1.0 and results[-1][4]["success"] is False
    # five tokens are still allowed to be submitted
    *_, (_, r, term, trunc, _) = play(formula_env("ezpoints", ["4", "3"]), "4*3++=")
    assert (r, term, trunc) == (-1.0, True, False)


def test_ezpoints_deals_are_always_solvable():
    env = make_env("ezpoints", image_size=SMALL).unwrapped
    for seed in range(300):
        env.reset(seed=seed)
        a, b = env.values()
        assert a + b == 12 or a * b == 12


# --- Points24 -------------------------------------------------------------------------------------
def test_points24_draws_four_large_cards_clear_of_the_formula():
    """Two rows of two: a row of four leaves cards 0.22 of the image wide, which the tiny model learns
    to read far more slowly (see Points24Env._card_boxes)."""
    size = 112
    env = new("points24", image_size=size).unwrapped
    env.formula = tokens("(10+10)+4/1")
    image, boxes = env.render(), env._card_boxes()
    assert len(boxes) == 4
    for i, (x, y, w, h) in enumerate(boxes):
        assert w >= 0.29 * size and x >= 0 and x + w <= size and y >= 0
        assert y + h < (env.label_y - env.text_size / 2) * size  # above the "Formula:" line
        corner = image[int(y + 0.45 * h) : int(y + 0.55 * h), int(x + 2) : int(x + 0.15 * w)]
        assert corner.min() > 200  # the card's white face is drawn where its box says
        for x2, y2, w2, h2 in boxes[i + 1 :]:
            assert x + w <= x2 or x2 + w2 <= x or y + h <= y2 or y2 + h2 <= y  # no overlap
    assert (image[int(0.92 * size) :, : size // 2] > 200).any()  # the formula is written at the bottom


@pytest.mark.parametrize(
    ("ranks", "formula"),
    [
        (["10", "K", "4", "4"], "(10*10-4)/4"),
        (["3", "3", "8", "8"], "8/(3-8/3)"),
        (["A", "2", "3", "4"], "1*2*3*4"),
    ],
)
def test_points24_known_solutions(ranks, formula):
    env = formula_env("points24", ranks)
    *steps, (_, r, term, trunc, info) = play(env, formula + "=")
    assert all(s[1] == 0.0 for s in steps)
    assert (r, term, trunc, info["success"]) == (10.0, True, False, True)


def test_points24_exact_arithmetic_where_float_fails():
    assert 8 / (3 - 8 / 3) != 24  # float
    assert evaluate(tokens("8/(3-8/3)")) == 24


def test_points24_must_use_every_card():
    *_, (_, r, _, _, info) = play(formula_env("points24", ["8", "3", "1", "1"]), "8*3=")
    assert (r, info["success"]) == (-1.0, False)


def test_points24_truncates_past_twenty():
    env = formula_env("points24", ["8", "3", "1", "1"])
    results = play(env, ["("] * 21)
    assert [r[3] for r in results] == [False] * 20 + [True]


def test_points24_unsolvable_deal_oracle_says_equals():
    env = formula_env("points24", ["A", "A", "A", "A"])
    assert solve([1, 1, 1, 1]) is None and not env.unwrapped.solvable()
    assert env.unwrapped.actions[env.unwrapped.oracle_action()] == "="


def test_oracle_finds_a_solution_off_its_own_path():
    env = formula_env("ezpoints", ["10", "2"])
    play(env, ["2"])  # the solver's own answer starts with 10
    *_, (_, r, _, _, _) = [env.step(env.unwrapped.oracle_action()) for _ in range(3)]
    assert r == 10.0 and env.unwrapped.formula == ["2", "+", "10"]
    env = formula_env("points24", ["3", "3", "8", "8"])
    play(env, ["3"])  # only 8/(3-8/3) solves it: a formula starting with 3 cannot be completed
    assert env.unwrapped.actions[env.unwrapped.oracle_action()] == "="


# --- the parser and the solver --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1+2*3", Fraction(7)),
        ("(1+2)*3", Fraction(9)),
        ("10-4-3", Fraction(3)),
        ("10/4/5", Fraction(1, 2)),
        ("2*(3-(4+1))", Fraction(-4)),
        ("1/(2-2)", None),
        ("6 2", None),
        ("(1+2", None),
        ("1+2)", None),
        ("", None),
        ("-1+2", None),
        ("1**2", None),
    ],
)
def test_evaluate(text, value):
    assert evaluate(tokens(text)) == value


def test_solver_is_exact_and_complete():
    # every 4-number multiset over 1..10: a solution evaluates to 24 with the same numbers
    solvable = 0
    for values in combinations_with_replacement(range(1, 11), 4):
        solution = solve(values)
        if solution is not None:
            solvable += 1
            assert evaluate(solution) == 24 and sorted(numbers(solution)) == sorted(values)
    assert solvable == 566  # the well-known count for 24 with J/Q/K = 10
    # the fast solver agrees with brute-force enumeration on a spread of deals
    for values in [
        (1, 1, 1, 1),
        (1, 1, 1, 8),
        (3, 3, 8, 8),
        (1, 5, 5, 5),
        (4, 4, 10, 10),
        (1, 2, 7, 7),
        (9, 9, 9, 9),
    ]:
        assert (solve(values) is None) == (all_solutions(values) == [])
    assert solve([2, 6], 12, "+*") == ["6", "*", "2"]
    assert solve([5, 7], 12, "+*") == ["7", "+", "5"]


# --- Blackjack ------------------------------------------------------------------------------------
def blackjack(player: list[str], dealer: list[str], deck: list[str]) -> gym.Env:
    """A table with the given ranks and a scripted deck (drawn from the front)."""
    env = new("blackjack", image_size=SMALL)
    u = env.unwrapped
    u.player, u.dealer = [(r, "S") for r in player], [(r, "H") for r in dealer]
    cards = [(r, "D") for r in deck]
    u.draw_card = lambda: cards.pop(0)
    return env


@pytest.mark.parametrize(
    ("player", "dealer", "deck", "moves", "reward"),
    [
        (["K", "6"], ["9", "7"], ["9"], ["hit"], -1.0),  # bust
        (["K", "Q"], ["10", "7"], [], ["stand"], 1.0),  # 20 v 17
        (["K", "6"], ["10", "6"], ["K"], ["stand"], 1.0),  # dealer busts
        (["K", "8"], ["10", "8"], [], ["stand"], 0.0),  # draw
        (["K", "7"], ["A", "6"], ["5"], ["stand"], 0.0),  # dealer stands on soft 17
        (["K", "7"], ["A", "5"], ["2"], ["stand"], -1.0),  # soft 16 draws: 18 beats 17
        (["A", "K"], ["7", "4", "K"], [], ["stand"], 0.0),  # natural v three-card 21: no natural rule
        (["A", "5"], ["10", "8"], ["K", "3"], ["hit", "hit", "stand"], 1.0),  # the ace drops to 1: 16, 19
    ],
)
def test_blackjack_rules(player, dealer, deck, moves, reward):
    env = blackjack(player, dealer, deck)
    results = play(env, moves)
    _, r, term, trunc, info = results[-1]
    assert (r, term, trunc, info["success"]) == (reward, True, False, reward > 0)
    assert all(not res[2] for res in results[:-1])
    json.dumps(info)


def test_blackjack_totals_and_strategy():
    assert hand_total([("A", "S"), ("6", "H")]) == (17, True)
    assert hand_total([("A", "S"), ("6", "H"), ("K", "H")]) == (17, False)
    assert hand_total([("A", "S"), ("A", "H")]) == (12, True)
    assert basic_strategy(16, False, 10)[0] == "hit" and basic_strategy(16, False, 6)[0] == "stand"
    assert basic_strategy(12, False, 3)[0] == "hit" and basic_strategy(12, False, 4)[0] == "stand"
    assert basic_strategy(18, True, 9)[0] == "hit" and basic_strategy(18, True, 8)[0] == "stand"
    assert basic_strategy(17, True, 2)[0] == "hit" and basic_strategy(11, False, 11)[0] == "hit"


# --- the oracles over 1,000 seeded episodes -------------------------------------------------------
def oracle_episodes(name: str, n: int = 1000) -> tuple[list[float], list[gym.Env]]:
    env = make_env(name, image_size=SMALL).unwrapped  # no wrappers: the checker's overhead is not needed
    returns, solvable = [], 0
    for seed in range(n):
        env.reset(seed=seed)
        solvable += name != "points24" or env.solvable()
        total, done = 0.0, False
        while not done:
            action = env.oracle_action()
            assert 0 <= action < len(env.actions)
            _, reward, terminated, truncated, info = env.step(action)
            total, done = total + reward, terminated or truncated
        assert info["success"] == (total > 0)
        returns.append(total)
    return returns, solvable


@pytest.mark.parametrize("name", ["numberline", "ezpoints"])
def test_oracle_always_wins(name):
    returns, _ = oracle_episodes(name)
    assert all(r > 0 for r in returns)


def test_oracle_points24_wins_exactly_the_solvable_deals():
    returns, solvable = oracle_episodes("points24")
    wins = sum(r > 0 for r in returns)
    assert wins == solvable and 0.6 < wins / 1000 < 0.85
    assert all(r == 10.0 for r in returns if r > 0) and all(r == -1.0 for r in returns if r <= 0)


def test_oracle_blackjack_near_basic_strategy_win_rate():
    returns, _ = oracle_episodes("blackjack")
    wins, draws = sum(r > 0 for r in returns) / 1000, sum(r == 0 for r in returns) / 1000
    # basic strategy (hit/stand) wins ~43.1% and draws ~9.4% (200k-episode simulation); 1,000 episodes
    # have a standard error of ~1.6 points
    assert 0.39 <= wins <= 0.47 and 0.06 <= draws <= 0.13

"""ALFWorld on the real TextWorld engine, over the games shipped in data/alfworld.

The engine tests need the optional `alfworld` extra (alfworld, textworld, Fast Downward); without it
they are skipped with the install hint. The pure tests (prompt, parser, renderer, goal conditions)
always run.
"""

import json
import os
import re
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from vlmagent.envs.alfworld import (
    DATA_DIR,
    INSTALL_HINT,
    MAX_STEPS,
    NOT_A_COMMAND,
    TASK_TYPES,
    ALFWorldEnv,
    Task,
    World,
    alfworld_oracle_response,
    alfworld_prompt,
    engine_available,
    find_games,
    goal_conditions,
    register,
    render_world,
)

needs_engine = pytest.mark.skipif(not engine_available(), reason=f"alfworld engine missing: {INSTALL_HINT}")


@pytest.fixture(scope="module")
def env():
    e = ALFWorldEnv(split="train")
    yield e
    e.close()


def game_index(env: ALFWorldEnv, task_type: str, k: int = 0) -> int:
    matches = [i for i, g in enumerate(env.games) if g.parent.parent.name.startswith(task_type + "-")]
    return matches[k]


# --- the engine ----------------------------------------------------------------------------------------
@needs_engine
@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_walkthrough_wins_every_shipped_game(task_type):
    """Every shipped game of this type, train and held-out, is won by its walkthrough through the engine,
    with the reward 50 x won + goal-condition rate at every step and the rate at 1.0 only when won."""
    for split in ("train", "heldout"):
        env = ALFWorldEnv(split=split, task_types=[task_type], images=False)
        assert len(env.games) >= 2
        for i in range(len(env.games)):
            _, info = env.reset(options={"game": i})
            assert info["task_type"] == task_type and not info["won"]
            walkthrough = env.walkthrough
            assert 0 < len(walkthrough) <= MAX_STEPS
            for t, command in enumerate(walkthrough):
                assert command in env.actions
                assert env.actions[env.oracle_action()] == command  # the oracle is the walkthrough's expert
                _, reward, terminated, truncated, info = env.step(env.actions.index(command))
                rate = info["goal_condition_success_rate"]
                assert (rate == 1.0) == info["won"]
                assert reward == pytest.approx(50.0 * info["won"] + rate)
                assert terminated == (t == len(walkthrough) - 1) and not truncated
            assert info["won"] and info["success"] and reward == pytest.approx(51.0)
        env.close()


@needs_engine
def test_inadmissible_command_costs_one_and_the_episode_goes_on(env):
    env.reset(options={"game": game_index(env, "pick_clean_then_place_in_recep")})
    actions, world = list(env.actions), env.render()
    unparsed = '{"thoughts": "I am in the middle of the room. Next: go to mars (99).", "action": "99"}'
    shown = {"fly to the moon": "fly to the moon", 10_000: NOT_A_COMMAND, -1: NOT_A_COMMAND}
    for bad in (*shown, unparsed):
        _, reward, terminated, truncated, info = env.step(bad)
        assert reward == -1.0 and not terminated and not truncated
        assert not info["admissible"] and info["feedback"] == "Nothing happens."
        assert env.actions == actions and np.array_equal(env.render(), world)  # the state did not change
        # the history shows a command as typed, and neither an index nor a whole response
        assert f"> {shown.get(bad, NOT_A_COMMAND)}\nNothing happens." in env.state_text()
        assert "thoughts" not in env.state_text()
    # A command given as text is accepted when admissible; the oracle still wins from here.
    _, reward, *_ = env.step(env.oracle_command().upper())
    assert reward == 0.0
    done, steps = False, 0
    while not done:
        _, reward, terminated, truncated, info = env.step(env.oracle_action())
        done, steps = terminated or truncated, steps + 1
    assert info["won"] and info["steps"] == 4 + 1 + steps


@needs_engine
def test_truncation_at_the_step_limit(env):
    _, info = env.reset(seed=0)
    for t in range(MAX_STEPS):
        _, reward, terminated, truncated, info = env.step(env.actions.index("look"))
        assert not terminated and truncated == (t == MAX_STEPS - 1)
        assert reward == pytest.approx(info["goal_condition_success_rate"])
    assert info["steps"] == MAX_STEPS and not info["won"]
    short = ALFWorldEnv(split="train", max_steps=3, images=False)
    short.reset(seed=0)
    assert [short.step("nonsense")[3] for _ in range(3)] == [False, False, True]
    short.close()


@needs_engine
def test_seeded_determinism():
    a, b = ALFWorldEnv(split="heldout"), ALFWorldEnv(split="heldout")
    games = set()
    for seed in range(4):
        obs_a, info_a = a.reset(seed=seed)
        obs_b, info_b = b.reset(seed=seed)
        assert np.array_equal(obs_a, obs_b) and info_a == info_b and a.state_text() == b.state_text()
        games.add(info_a["game"])
        rng_a, rng_b = np.random.default_rng(seed), np.random.default_rng(seed)
        for _ in range(3):
            out_a = a.step(int(rng_a.integers(len(a.actions))))
            out_b = b.step(int(rng_b.integers(len(b.actions))))
            assert np.array_equal(out_a[0], out_b[0]) and out_a[1:] == out_b[1:]
    assert len(games) > 2  # seeds spread over the games
    a.close()
    b.close()


@needs_engine
def test_image_renders(env):
    obs, _ = env.reset(options={"game": game_index(env, "pick_two_obj_and_place")})
    assert obs.shape == (300, 300, 3) and obs.dtype == np.uint8 and obs.std() > 10
    moved, *_ = env.step(env.oracle_action())  # go to the first object: the picture changes
    assert not np.array_equal(obs, moved)
    small = ALFWorldEnv(split="train", image_size=128)
    assert small.reset(seed=0)[0].shape == (128, 128, 3)
    small.close()
    text_only = ALFWorldEnv(split="train", images=False)
    assert text_only.reset(seed=0)[0].shape == (1, 1, 3)
    text_only.close()


@needs_engine
def test_oracle_recovers_after_a_random_detour(env):
    rng = np.random.default_rng(0)
    for game in range(0, len(env.games), 5):
        env.reset(options={"game": game})
        for _ in range(8):  # wander, maybe picking things up or opening doors
            _, _, terminated, _, info = env.step(int(rng.integers(len(env.actions))))
            if terminated:
                break
        done = terminated
        while not done:
            _, _, terminated, truncated, info = env.step(env.oracle_action())
            done = terminated or truncated
        assert info["won"], info


@needs_engine
def test_state_text_prompt_and_oracle_response(env):
    env.reset(options={"game": game_index(env, "pick_heat_then_place_in_recep")})
    env.step(env.oracle_action())
    text = env.state_text()
    assert text.startswith(f"Your task is to: {env.task.text}.")
    assert f"> {env._log[-1][0]}" in text and "carrying nothing" in text
    assert all(f"\n{a} ({i})" in text for i, a in enumerate(env.actions, 1))
    from vlmagent import prompts

    for cot in (True, False):
        prompt = alfworld_prompt(text, cot)
        assert text in prompt and ('"thoughts"' in prompt) == cot and '"action"' in prompt
        response = alfworld_oracle_response(env, cot)
        assert ("thoughts" in json.loads(response)) == cot
        assert json.loads(response)["action"] == str(env.oracle_action() + 1)  # its number in the list
        assert prompts.parse(env.actions, response, numbered=True) == (env.actions[env.oracle_action()], True)
        if cot:  # the thoughts end with the chosen line as listed, so the number is copied from them
            line = f"{env.actions[env.oracle_action()]} ({env.oracle_action() + 1})"
            assert f"\n{line}" in text and json.loads(response)["thoughts"].endswith(f"Next: {line}.")
    info = env.step(0)[4]
    json.dumps(info)  # JSON-serialisable


@needs_engine
def test_demo_slips_and_the_random_policy_name_commands_by_number(env):
    from vlmagent.prompts import parse
    from vlmagent.stages import collect, demos

    env.reset(options={"game": 0})
    rng = np.random.default_rng(0)
    slipping = demos.epsilon_actor(collect.oracle_actor("alfworld", cot=True), random_frac=1.0)
    for actor in (slipping, collect.random_actor()):
        for _ in range(5):
            response = actor([env], [None], ["prompt"], rng)[0].response
            number = json.loads(response)["action"]
            assert number.isdigit() and 1 <= int(number) <= len(env.actions), response
            assert parse(env.actions, response, numbered=True) == (env.actions[int(number) - 1], True)


@needs_engine
def test_history_sets_how_many_commands_the_prompt_shows():
    from vlmagent.envs.alfworld import ALFWorldEnv

    texts = {}
    for history in (0, 1, 3):
        env = ALFWorldEnv(split="train", history=history, images=False)
        env.reset(seed=5)
        played = []
        for _ in range(3):
            played.append(env.actions[env.oracle_action()])
            env.step(env.oracle_action())
        texts[history] = env.state_text()
        commands = [line for line in texts[history].splitlines() if line.startswith("> ")]
        assert commands == [f"> {c}" for c in played[len(played) - history :]], history
        env.close()
    assert len(texts[0]) < len(texts[1]) < len(texts[3])


@needs_engine
def test_register_and_gym_make():
    register()
    env = gym.make("vlmagent/ALFWorld-v0", image_size=64)
    _, info = env.reset(seed=1)
    u = env.unwrapped
    assert u.action_space.n == len(u.actions) == len(info["admissible_commands"])
    env.step(u.oracle_action())
    assert u.action_space.n == len(u.actions)
    env.close()
    held = gym.make("vlmagent/ALFWorldHeldout-v0", images=False)
    assert all("heldout" in str(g) for g in held.unwrapped.games)
    held.close()


@needs_engine
def test_games_play_in_alfworlds_own_text_env():
    """The official path (textworld.gym + AlfredDemangler/AlfredInfos, as AlfredTWEnv builds it) plays
    our games to a win with the same admissible commands as our env."""
    import textworld
    import textworld.gym
    from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos

    game = find_games(DATA_DIR / "heldout", ["pick_cool_then_place_in_recep"])[0]
    walkthrough = json.loads(game.read_text())["walkthrough"]
    infos = textworld.EnvInfos(won=True, admissible_commands=True, extras=["gamefile"])
    env_id = textworld.gym.register_game(
        str(game), infos, max_episode_steps=50, wrappers=[AlfredDemangler(), AlfredInfos]
    )
    official = textworld.gym.make(env_id)
    _, state = official.reset()
    ours = ALFWorldEnv(game_dir=game.parent)
    ours.reset(seed=0)
    assert sorted(state["admissible_commands"]) == ours.actions
    for command in walkthrough:
        _, _, done, state = official.step(command)
    assert done and state["won"]
    official.close()
    ours.close()


@needs_engine
def test_generator_is_deterministic_and_reproduces_the_shipped_games(tmp_path):
    from vlmagent.envs.alfworld_games import generate_games

    (game,) = generate_games(tmp_path, 1, seed=0, task_types=("pick_and_place_simple",))
    shipped = DATA_DIR / "train" / game.relative_to(tmp_path)
    assert shipped.read_bytes() == game.read_bytes()
    assert (shipped.parent / "traj_data.json").read_bytes() == (game.parent / "traj_data.json").read_bytes()
    # Held-out games differ from the training games (compared without the problem's name, which has the seed)
    problems = {
        split: {
            re.sub(r"\(problem [^)]*\)", "", json.loads(g.read_text())["pddl_problem"])
            for g in find_games(DATA_DIR / split)
        }
        for split in ("train", "heldout")
    }
    assert len(problems["train"]) == 24 and len(problems["heldout"]) == 12
    assert not problems["train"] & problems["heldout"]


@needs_engine
def test_template_cache_keeps_the_engines_output():
    """The memoized grammar parsing gives the same feedback and admissible commands as TextWorld's own
    (in a fresh process: first uncached, then cached)."""
    script = (
        "import json, os, numpy as np\n"
        "import vlmagent.envs.alfworld as alf\n"
        "def trace():\n"
        "    env = alf.ALFWorldEnv(split='heldout'); rng = np.random.default_rng(0); out = []\n"
        "    env.reset(seed=3)\n"
        "    for _ in range(12):\n"
        "        info = env.step(int(rng.integers(len(env.actions))))[4]\n"
        "        out.append([info['feedback'], info['admissible_commands']])\n"
        "    return out\n"
        "plain = trace()\n"
        "assert not alf._SPED_UP\n"
        "del os.environ['VLMAGENT_ALFWORLD_NO_CACHE']; alf._speed_up_textworld(); assert alf._SPED_UP\n"
        "print(json.dumps([plain, trace()]))\n"
    )
    environ = {**os.environ, "VLMAGENT_ALFWORLD_NO_CACHE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=environ, check=True
    )
    plain, cached = json.loads(proc.stdout)
    assert plain == cached


def test_find_games_filters_like_alfworld(tmp_path):
    if not (DATA_DIR / "train").is_dir():
        pytest.skip("no shipped games")
    source = find_games(DATA_DIR / "train", ["pick_and_place_simple"])[0].parent
    for name, solvable in (("ok-1", True), ("movable_recep-1", True), ("Sliced-1", True), ("bad-1", False)):
        folder = tmp_path / name / "trial_0"
        folder.mkdir(parents=True)
        game = json.loads((source / "game.tw-pddl").read_text()) | {"solvable": solvable}
        (folder / "game.tw-pddl").write_text(json.dumps(game))
        (folder / "traj_data.json").write_text((source / "traj_data.json").read_text())
    assert [g.parent.parent.name for g in find_games(tmp_path)] == ["ok-1"]
    assert find_games(tmp_path, ["look_at_obj_in_light"]) == []
    with pytest.raises(FileNotFoundError):
        find_games(tmp_path / "missing")


# --- pure parts (no engine) ----------------------------------------------------------------------------
def kitchen(held=None, opened=(), hot=()) -> World:
    w = World(agent_loc="l1")
    w.recep_loc = {"cabinet 1": "l1", "countertop 1": "l2", "microwave 1": "l3"}
    w.rtype = {"cabinet 1": "cabinet", "countertop 1": "countertop", "microwave 1": "microwave"}
    w.openable = {"cabinet 1", "microwave 1"}
    w.opened = set(opened)
    w.otype = {"apple 1": "apple", "mug 1": "mug"}
    w.inside = {"apple 1": "cabinet 1", "mug 1": "countertop 1"}
    if held:
        w.held = held
        del w.inside[held]
    w.flags = {"apple 1": {"heatable", *(["ishot"] if "apple 1" in hot else [])}}
    w.can_contain = {("countertop", "apple"), ("cabinet", "apple"), ("microwave", "apple")}
    return w


def test_goal_conditions_count_like_alfworld():
    heat = Task("pick_heat_then_place_in_recep", "apple", "countertop")
    assert goal_conditions(kitchen(), heat) == (0, 3)
    assert goal_conditions(kitchen(held="apple 1", hot=["apple 1"]), heat) == (1, 3)
    done = kitchen(hot=["apple 1"])
    done.inside["apple 1"] = "countertop 1"
    assert goal_conditions(done, heat) == (3, 3)
    two = Task("pick_two_obj_and_place", "apple", "countertop")
    assert goal_conditions(done, two) == (1, 2)


def test_render_hides_what_a_closed_door_hides():
    closed = render_world(kitchen())
    empty = kitchen()
    del empty.inside["apple 1"]
    assert np.array_equal(closed, render_world(empty))  # the apple behind the door is not drawn
    opened = render_world(kitchen(opened=["cabinet 1"]))
    assert not np.array_equal(closed, opened)
    assert not np.array_equal(opened, render_world(kitchen(opened=["cabinet 1"], held="mug 1")))
    assert render_world(kitchen(), size=96).shape == (96, 96, 3)


def test_parse_tells_cabinet_1_from_cabinet_10():
    from vlmagent.prompts import parse

    actions = ["go to cabinet 1", "go to cabinet 10", "go to cabinet 2", "take apple 1 from countertop 1"]
    assert parse(actions, '{"action": "go to cabinet 1"}') == ("go to cabinet 1", True)
    assert parse(actions, '{"action": "go to cabinet 10"}') == ("go to cabinet 10", True)
    assert parse(actions, '{"thoughts": "cabinet 1 is empty", "action": "I go to cabinet 10."}') == (
        "go to cabinet 10",
        True,
    )
    assert (
        parse(actions, '{"action": "Take apple 1 from countertop 1"}')[0] == "take apple 1 from countertop 1"
    )
    assert parse(actions, '{"action": "go to cabinet 3"}') == (None, False)


def test_parse_reads_a_number_as_the_listed_action_only_when_numbered():
    from vlmagent.prompts import parse

    actions = ["go to cabinet 1", "go to cabinet 10", "look"]
    assert parse(actions, '{"action": "2"}', numbered=True) == ("go to cabinet 10", True)
    assert parse(actions, '{"action": 3}', numbered=True) == ("look", True)
    assert parse(actions, '{"action": "look"}', numbered=True) == ("look", True)  # the command still counts
    for bad in ('{"action": "0"}', '{"action": "4"}', '{"action": "-1"}', '{"action": "2 or 3"}'):
        assert parse(actions, bad, numbered=True) == (None, False), bad
    # the card tasks' actions include numbers: there a number is an action's text, not its place
    assert parse(["1", "2", "+"], '{"action": "2"}') == ("2", True)
    assert parse(["5", "+"], '{"action": "1"}') == (None, False)


def test_prompt_format():
    state = "Your task is to: put a hot apple in countertop.\nAdmissible actions: 'look'"
    cot, plain = alfworld_prompt(state, True), alfworld_prompt(state, False)
    assert state in cot and state in plain
    assert '"thoughts"' in cot and '"thoughts"' not in plain and '"action"' in plain


def test_split_dirs(tmp_path, monkeypatch):
    from vlmagent.envs.alfworld import split_dir

    assert split_dir("train") == DATA_DIR / "train" and split_dir("heldout") == DATA_DIR / "heldout"
    monkeypatch.setenv("VLMAGENT_ALFWORLD_GAMES", str(tmp_path))
    (tmp_path / "valid_unseen").mkdir()
    assert split_dir("train") == tmp_path / "train"
    assert split_dir("heldout") == tmp_path / "valid_unseen"  # the official layout's held-out split

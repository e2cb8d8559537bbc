"""ALFWorld on the real TextWorld engine: a gymnasium env over a directory of games.

A game is a folder with `game.tw-pddl` (PDDL domain, text grammar with the task filled in, PDDL
problem, `solvable`, optionally `walkthrough`) and `traj_data.json` (`task_type`, `pddl_params`): the
official ALFWorld data layout, or the games we generate (`vlmagent.envs.alfworld_games`, shipped under
`data/alfworld/`). The engine is TextWorld's PddlEnv (Fast Downward underneath) with ALFWorld's display
names ("cabinet 1", "sinkbasin 1"), so admissible commands and feedback read exactly as in ALFWorld.

Differences from the paper, on purpose: the paper's frames come from AI2-THOR (a Unity binary that needs
a display), so the image here is a rendered schematic of what the agent sees (where it is, the visible
receptacles and objects, what it carries); our own games are smaller than the ALFRED scenes. Numbers are
not directly comparable with the paper's.

Reward (the reference's, every step): 50 x won + goal-condition success rate, minus 1 when the command is
not admissible (the episode goes on, the state is unchanged). Success = won. At most 50 steps.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from vlmagent.envs.base import TaskEnv

TASK_TYPES = (
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
)
# Task type -> (state predicate, appliance receptacle type, command verb) for the three transform tasks.
TRANSFORMS = {
    "pick_clean_then_place_in_recep": ("isclean", "sinkbasin", "clean"),
    "pick_heat_then_place_in_recep": ("ishot", "microwave", "heat"),
    "pick_cool_then_place_in_recep": ("iscool", "fridge", "cool"),
}
WIN_REWARD = 50.0
INADMISSIBLE_PENALTY = -1.0
# What the history shows for an inadmissible action that is not one line of command text: an index out of
# range, or a whole unparsed response (collect's parse_failure = "env" steps the raw text), which would
# fill the next prompts with JSON no demo ever showed
NOT_A_COMMAND = "(no admissible action)"
COMMAND_TEXT = re.compile(r"[a-z0-9 ,'/-]{1,80}")
MAX_STEPS = 50
DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "alfworld"
GAME_DIR_ENV = "VLMAGENT_ALFWORLD_GAMES"
ENV_ID = "vlmagent/ALFWorld-v0"
HELDOUT_ENV_ID = "vlmagent/ALFWorldHeldout-v0"
ENV_IDS = {"alfworld": ENV_ID, "alfworld-heldout": HELDOUT_ENV_ID}
INSTALL_HINT = "ALFWorld needs the alfworld package: pip install 'vlmagent[alfworld]' (or alfworld==0.4.2)"


def engine_available() -> bool:
    """True when textworld, fast_downward and alfworld import (the optional `alfworld` extra)."""
    try:
        import alfworld.agents.utils.misc  # noqa: F401
        import fast_downward  # noqa: F401
        import textworld.envs.pddl  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------------------------------------
# Games on disk


@dataclass(frozen=True)
class Task:
    """What a game asks, from its traj_data.json: lower-case ALFRED type names ("apple", "countertop")."""

    task_type: str
    obj: str
    parent: str = ""
    toggle: str = ""
    text: str = ""

    @staticmethod
    def from_traj(traj: dict[str, Any], text: str = "") -> Task:
        p = traj.get("pddl_params", {})
        return Task(
            task_type=traj["task_type"],
            obj=(p.get("object_target") or "").lower(),
            parent=(p.get("parent_target") or "").lower(),
            toggle=(p.get("toggle_target") or "").lower(),
            text=text,
        )


def find_games(game_dir: str | os.PathLike, task_types: Sequence[str] | None = None) -> list[Path]:
    """Playable `game.tw-pddl` files under `game_dir`, sorted, filtered as ALFWorld's own loader does.

    Skips games without traj_data.json, not marked solvable, or with movable receptacles / sliced objects
    (which the text engine does not support).
    """
    root = Path(os.path.expandvars(str(game_dir))).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"ALFWorld game directory not found: {root}")
    return list(_find_games(root, tuple(sorted(task_types or TASK_TYPES))))


@functools.lru_cache(maxsize=16)
def _find_games(root: Path, task_types: tuple[str, ...]) -> tuple[Path, ...]:
    # Cached: the official train split has thousands of 36 KB game files, and envs are made per batch.
    games = []
    for game in sorted(root.rglob("game.tw-pddl")):
        folder = str(game.parent.relative_to(root))
        traj_path = game.parent / "traj_data.json"
        if "movable" in folder or "Sliced" in folder or not traj_path.exists():
            continue
        if json.loads(traj_path.read_text())["task_type"] not in task_types:
            continue
        if json.loads(game.read_text()).get("solvable") is not True:
            continue
        games.append(game)
    return tuple(games)


def split_dir(split: str, games_root: str | os.PathLike | None = None) -> Path:
    """The folder of a split under the games root: `games_root`, else $VLMAGENT_ALFWORLD_GAMES (e.g. the
    official `$ALFWORLD_DATA/json_2.1.1`), else our shipped `data/alfworld`. "heldout" falls back to the
    official "valid_unseen" split where there is no "heldout" folder."""
    root = Path(os.path.expandvars(str(games_root or os.environ.get(GAME_DIR_ENV) or DATA_DIR))).expanduser()
    if split == "heldout" and not (root / split).is_dir() and (root / "valid_unseen").is_dir():
        return root / "valid_unseen"
    return root / split


def task_text(grammar: str) -> str:
    """The task sentence the game's grammar was filled in with ("put a clean mug in coffeemachine")."""
    m = re.search(r"Your task is to: (.*?)\.?\"", grammar)
    return m.group(1).strip() if m else ""


def load_game(path: str | os.PathLike) -> tuple[dict[str, Any], Task]:
    path = Path(path)
    game = json.loads(path.read_text())
    traj = json.loads((path.parent / "traj_data.json").read_text())
    return game, Task.from_traj(traj, task_text(game["grammar"]))


# ---------------------------------------------------------------------------------------------------------
# The world state, read from the engine's PDDL facts


def name_key(name: str) -> tuple[str, int]:
    """Natural order of display names: cabinet 2 before cabinet 10."""
    base, _, num = name.rpartition(" ")
    return (base, int(num)) if num.isdigit() else (name, 0)


@dataclass
class World:
    """The true state of one game, with display names (all the oracle and the renderer need)."""

    agent_loc: str = ""
    recep_loc: dict[str, str] = field(default_factory=dict)  # receptacle -> location id
    rtype: dict[str, str] = field(default_factory=dict)  # receptacle -> "cabinet"
    otype: dict[str, str] = field(default_factory=dict)  # object -> "apple"
    inside: dict[str, str] = field(default_factory=dict)  # object -> receptacle
    openable: set[str] = field(default_factory=set)
    opened: set[str] = field(default_factory=set)
    held: str | None = None
    flags: dict[str, set[str]] = field(default_factory=dict)  # object -> {"ishot", "toggleable", ...}
    can_contain: set[tuple[str, str]] = field(default_factory=set)  # (rtype, otype)

    @staticmethod
    def from_facts(facts: Sequence[Any], names: dict[str, str]) -> World:
        w = World()

        def n(var: Any) -> str:
            return names.get(var.name, var.name)

        def t(var: Any) -> str:
            return var.name.lower().removesuffix("type")

        for f in facts:
            a = f.arguments
            if f.name == "atlocation":
                w.agent_loc = a[1].name
            elif f.name == "receptacleatlocation":
                w.recep_loc[n(a[0])] = a[1].name
            elif f.name == "receptacletype":
                w.rtype[n(a[0])] = t(a[1])
            elif f.name == "objecttype":
                w.otype[n(a[0])] = t(a[1])
            elif f.name == "inreceptacle":
                w.inside[n(a[0])] = n(a[1])
            elif f.name == "openable":
                w.openable.add(n(a[0]))
            elif f.name == "opened":
                w.opened.add(n(a[0]))
            elif f.name == "holds":
                w.held = n(a[1])
            elif f.name == "cancontain":
                w.can_contain.add((t(a[0]), t(a[1])))
            elif len(a) == 1 and a[0].type == "object":
                w.flags.setdefault(n(a[0]), set()).add(f.name)
        return w

    def here(self) -> list[str]:
        """Receptacles at the agent's location (none in the middle of the room)."""
        return sorted((r for r, loc in self.recep_loc.items() if loc == self.agent_loc), key=name_key)

    def receptacles(self, rtype: str | None = None) -> list[str]:
        return sorted((r for r, t in self.rtype.items() if rtype is None or t == rtype), key=name_key)

    def objects(self, otype: str) -> list[str]:
        return sorted((o for o, t in self.otype.items() if t == otype), key=name_key)

    def contents(self, recep: str) -> list[str]:
        return sorted((o for o, r in self.inside.items() if r == recep), key=name_key)

    def visible(self, recep: str) -> bool:
        return recep not in self.openable or recep in self.opened

    def has(self, obj: str, flag: str) -> bool:
        return flag in self.flags.get(obj, set())


def goal_conditions(w: World, task: Task) -> tuple[int, int]:
    """(conditions met, conditions) as ALFWorld's THOR tasks count them, read from the PDDL state.

    Met == total exactly when the game's PDDL goal holds.
    """
    objs = w.objects(task.obj)
    parents = set(w.receptacles(task.parent))
    in_place = [o for o in objs if w.inside.get(o) in parents]
    if task.task_type == "pick_and_place_simple":
        return int(bool(in_place)), 1
    if task.task_type == "pick_two_obj_and_place":
        best = max((sum(w.inside.get(o) == r for o in objs) for r in parents), default=0)
        return min(best, 2), 2
    if task.task_type == "look_at_obj_in_light":
        lamp_on = any(
            w.has(lamp, "istoggled") and w.recep_loc.get(w.inside.get(lamp, "")) == w.agent_loc
            for lamp in w.objects(task.toggle)
        )
        return int(w.held in objs) + int(lamp_on), 2
    flag = TRANSFORMS[task.task_type][0]
    met = int(bool(in_place)) + int(any(w.has(o, flag) for o in objs))
    return met + int(any(w.has(o, flag) for o in in_place)), 3


# ---------------------------------------------------------------------------------------------------------
# The oracle: a hand-coded expert over the true state (it knows where everything is, like ALFWorld's
# planner expert). A function of the state only, so it recovers from any detour the agent took.


def _reach(w: World, recep: str) -> str | None:
    """The command that brings the agent to an open `recep`, or None when it already stands at it open."""
    if w.recep_loc.get(recep) != w.agent_loc:
        return f"go to {recep}"
    if not w.visible(recep):
        return f"open {recep}"
    return None


def _fetch(w: World, obj: str) -> str:
    recep = w.inside[obj]
    return _reach(w, recep) or f"take {obj} from {recep}"


def _put(w: World, obj: str, recep: str) -> str:
    return _reach(w, recep) or f"move {obj} to {recep}"


def _nearest(w: World, receps: list[str]) -> str:
    """The one the agent stands at, else the first without a door, else the first."""
    return min(receps, key=lambda r: (w.recep_loc.get(r) != w.agent_loc, r in w.openable, name_key(r)))


def _drop(w: World, obj: str) -> str:
    """Put down an object the task does not need: here if it fits, else at the first place it fits."""
    fits = [r for r in w.receptacles() if (w.rtype[r], w.otype.get(obj)) in w.can_contain]
    return _put(w, obj, _nearest(w, fits)) if fits else "look"


def _pick(w: World, objs: list[str], prefer: str | None = None) -> str | None:
    """The object to fetch next: one already in the wanted state first, then the nearest to reach."""
    candidates = [o for o in objs if o in w.inside]
    if not candidates:
        return None

    def cost(o: str) -> tuple[int, int, tuple[str, int]]:
        done = 0 if prefer and w.has(o, prefer) else 1
        r = w.inside[o]
        steps = int(w.recep_loc.get(r) != w.agent_loc) + int(not w.visible(r))
        return done, steps, name_key(o)

    return min(candidates, key=cost)


def expert_command(w: World, task: Task) -> str:
    """The expert's next command in state `w` (a command of the admissible form)."""
    objs = w.objects(task.obj)
    holding_target = w.held is not None and w.held in objs
    if w.held is not None and not holding_target:
        return _drop(w, w.held)

    if task.task_type == "look_at_obj_in_light":
        if not holding_target:
            obj = _pick(w, objs)
            return _fetch(w, obj) if obj else "look"
        lamps = [lamp for lamp in w.objects(task.toggle) if lamp in w.inside]
        if not lamps:
            return "look"
        lamp = min(lamps, key=lambda x: (not w.has(x, "istoggled"), name_key(x)))
        recep = w.inside[lamp]
        if w.recep_loc.get(recep) != w.agent_loc:
            return f"go to {recep}"
        return f"use {lamp}" if not w.has(lamp, "istoggled") else "look"

    parents = w.receptacles(task.parent)
    if not parents:
        return "look"
    if task.task_type == "pick_two_obj_and_place":
        # Fill the parent that already holds the most targets; fetch one that is not there yet.
        parent = min(parents, key=lambda r: (-sum(w.inside.get(o) == r for o in objs), name_key(r)))
        if holding_target:
            return _put(w, w.held, parent)
        obj = _pick(w, [o for o in objs if w.inside.get(o) != parent])
        return _fetch(w, obj) if obj else "look"

    flag, appliance_type, verb = TRANSFORMS.get(task.task_type, (None, None, None))
    if not holding_target:
        obj = _pick(
            w, [o for o in objs if w.inside.get(o) not in parents or (flag and not w.has(o, flag))], flag
        )
        return _fetch(w, obj) if obj else "look"
    if flag and not w.has(w.held, flag):
        appliances = w.receptacles(appliance_type)
        if not appliances:
            return "look"
        appliance = _nearest(w, appliances)
        if w.recep_loc[appliance] != w.agent_loc:
            return f"go to {appliance}"
        return f"{verb} {w.held} with {appliance}"
    return _put(w, w.held, _nearest(w, parents))


# ---------------------------------------------------------------------------------------------------------
# The engine: TextWorld's PddlEnv with ALFWorld's display names


_SPED_UP = False


def _speed_up_textworld() -> None:
    """Memoize TextWorld's parsing of grammar templates and logic queries (pure functions of their text).

    The engine re-parses every admissible command's template with TatSu at every step; caching the
    parses makes steps about 2x faster with identical output. Each call gets its own copy of the parsed
    symbols, since the engine writes a context into them.
    """
    global _SPED_UP
    if _SPED_UP or os.environ.get("VLMAGENT_ALFWORLD_NO_CACHE"):
        return
    import textworld.envs.pddl.textgen as textgen
    from textworld.logic import Rule

    parse = textgen._parse_and_convert
    cached = functools.lru_cache(maxsize=8192)(lambda text, rule_name: parse(text, rule_name=rule_name))

    def parse_and_convert(text: str, rule_name: str | None = None, **kwargs: Any) -> Any:
        if kwargs.get("trace"):
            return parse(text, rule_name=rule_name, **kwargs)
        return copy.deepcopy(cached(text, rule_name))

    textgen._parse_and_convert = parse_and_convert
    Rule.parse_conjunctive_query = staticmethod(
        functools.lru_cache(maxsize=8192)(Rule.parse_conjunctive_query)
    )
    _SPED_UP = True


class Engine:
    """One game played through the real engine. `game` is a game.tw-pddl dict."""

    def __init__(self) -> None:
        try:
            import textworld
            from alfworld.agents.utils.misc import Demangler
            from textworld.envs.pddl import PddlEnv
        except ImportError as e:  # the optional extra is missing
            raise ImportError(f"{INSTALL_HINT} ({e})") from e
        _speed_up_textworld()
        self._demangler = Demangler
        self._env = PddlEnv(textworld.EnvInfos(won=True, admissible_commands=True))
        self.state: Any = None
        self.names: dict[str, str] = {}

    def load(self, game: dict[str, Any]) -> None:
        with _keep_argv():
            self._env.load(game)
        # ALFWorld's naming: "Cabinet_bar_..." -> "cabinet 1", "Sink_bar_..._bar_SinkBasin" -> "sinkbasin 1".
        infos = self._env._entity_infos
        demangler = self._demangler(game_infos=infos, shuffle=False)
        for info in infos.values():
            info.name = demangler.demangle_alfred_name(info.id)
        self.names = {k: info.name.strip() for k, info in infos.items()}

    def reset(self) -> str:
        with _keep_argv():
            self.state = self._env.reset()
        return self.state["feedback"]

    def step(self, command: str) -> str:
        self.state, _, _ = self._env.step(command)
        return self.state["feedback"]

    @property
    def admissible(self) -> list[str]:
        return list(self.state["admissible_commands"])

    @property
    def won(self) -> bool:
        return bool(self.state["won"])

    def world(self) -> World:
        facts = [f for f in self.state["_facts"] if not f.name.startswith("not_")]
        return World.from_facts(facts, self.names)

    # Each PddlEnv dlopens its own copy of Fast Downward (34 MB), and dlclose-ing more than one of them
    # crashes the interpreter at exit; so engines are never closed but kept for reuse by the next env.
    _free: list[Engine] = []

    @classmethod
    def acquire(cls) -> Engine:
        return cls._free.pop() if cls._free else cls()

    def release(self) -> None:
        if self not in Engine._free:
            self.state = None
            Engine._free.append(self)


class _keep_argv:
    """Fast Downward's translator overwrites sys.argv when it parses a problem; put it back."""

    def __enter__(self) -> None:
        self.argv = list(sys.argv)

    def __exit__(self, *exc: object) -> None:
        sys.argv[:] = self.argv


def play(game: dict[str, Any], task: Task, max_steps: int = MAX_STEPS) -> tuple[list[str], bool, list[float]]:
    """Run the expert from the start through the engine: (commands, won, goal-condition rate per step)."""
    engine = Engine.acquire()
    try:
        engine.load(game)
        engine.reset()
        commands, rates = [], []
        while not engine.won and len(commands) < max_steps:
            command = expert_command(engine.world(), task)
            if command not in engine.admissible:
                raise RuntimeError(f"expert command {command!r} is not admissible: {engine.admissible}")
            engine.step(command)
            commands.append(command)
            met, total = goal_conditions(engine.world(), task)
            rates.append(met / total)
        return commands, engine.won, rates
    finally:
        engine.release()


# ---------------------------------------------------------------------------------------------------------
# Rendering: an egocentric schematic (only what the agent can see from where it stands)

PALETTE = {
    "bg": (236, 232, 222),
    "band": (52, 61, 79),
    "band_text": (250, 250, 250),
    "text": (30, 30, 30),
    "muted": (110, 110, 110),
    "surface": (196, 160, 112),
    "container": (142, 168, 190),
    "appliance": (170, 180, 170),
    "chip": (255, 255, 255),
    "chip_edge": (80, 80, 80),
    "held": (255, 236, 170),
    "lamp_on": (255, 214, 60),
}
APPLIANCES = {"fridge", "microwave", "sinkbasin", "bathtubbasin", "stoveburner", "coffeemachine", "toaster"}


@functools.lru_cache(maxsize=16)
def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def render_world(w: World, size: int = 300) -> np.ndarray:
    """Draw where the agent is, what it can see there (closed doors hide contents) and what it holds.

    Laid out on a 300 x 300 canvas and drawn at `size` (coordinates and fonts scaled, text stays sharp).
    """
    from PIL import Image, ImageDraw

    k = size / 300

    def s(*v: float) -> list[int]:
        return [round(x * k) for x in v]

    img = Image.new("RGB", (size, size), PALETTE["bg"])
    d = ImageDraw.Draw(img)
    big, small = _font(max(6, round(17 * k))), _font(max(6, round(13 * k)))
    edge = PALETTE["chip_edge"]

    def chips(
        items: list[tuple[str, tuple[int, int, int]]], x0: float, y0: float, x1: float, y1: float
    ) -> None:
        """Labels as rounded chips, wrapped into rows; "..." when they do not fit."""
        x, y = x0, y0
        for text, fill in items:
            width = d.textlength(text, font=small) / k + 12
            if x + width > x1 and x > x0:
                x, y = x0, y + 25
            if y + 20 > y1:
                d.text(s(x, y - 4), "...", fill=PALETTE["muted"], font=small)
                return
            d.rounded_rectangle(s(x, y, x + width, y + 20), radius=round(6 * k), fill=fill, outline=edge)
            d.text(s(x + 6, y + 3), text, fill=PALETTE["text"], font=small)
            x += width + 6

    here = w.here()
    d.rectangle(s(0, 0, 300, 34), fill=PALETTE["band"])
    title = "At: " + ", ".join(here) if here else "In the middle of the room"
    d.text(s(10, 8), title, fill=PALETTE["band_text"], font=big)
    if not here:
        d.text(s(12, 44), "Around you:", fill=PALETTE["muted"], font=small)
        chips([(r, PALETTE["chip"]) for r in w.receptacles()], 12, 64, 288, 246)
    for i, recep in enumerate(here):
        slot = 202 / len(here)
        y0, y1 = 44 + i * slot, 44 + (i + 1) * slot - 6
        color = PALETTE["container"] if recep in w.openable else PALETTE["surface"]
        if w.rtype.get(recep) in APPLIANCES:
            color = PALETTE["appliance"]
        d.rounded_rectangle(
            s(10, y0, 290, y1), radius=round(10 * k), fill=color, outline=edge, width=max(1, round(2 * k))
        )
        d.text(s(20, y0 + 6), recep, fill=PALETTE["text"], font=big)
        if not w.visible(recep):
            # Closed doors: two panels with handles, and no contents.
            d.rectangle(s(24, y0 + 30, 147, y1 - 10), outline=edge, width=max(1, round(2 * k)))
            d.rectangle(s(153, y0 + 30, 276, y1 - 10), outline=edge, width=max(1, round(2 * k)))
            hy = (y0 + 20 + y1) / 2
            d.line(s(138, hy - 8, 138, hy + 8), fill=edge, width=max(1, round(3 * k)))
            d.line(s(162, hy - 8, 162, hy + 8), fill=edge, width=max(1, round(3 * k)))
            d.text(s(230, y0 + 8), "closed", fill=PALETTE["text"], font=small)
            continue
        if recep in w.openable:
            d.text(s(240, y0 + 8), "open", fill=PALETTE["text"], font=small)
        items = [
            (o + " (on)", PALETTE["lamp_on"]) if w.has(o, "istoggled") else (o, PALETTE["chip"])
            for o in w.contents(recep)
        ]
        if items:
            chips(items, 20, y0 + 32, 282, y1 - 4)
        else:
            d.text(s(20, y0 + 34), "nothing", fill=PALETTE["muted"], font=small)
    d.rectangle(s(0, 254, 300, 300), fill=PALETTE["band"])
    d.text(s(10, 268), "Holding:", fill=PALETTE["band_text"], font=big)
    if w.held:
        chips([(w.held, PALETTE["held"])], 96, 267, 296, 290)
    else:
        d.text(s(96, 268), "nothing", fill=PALETTE["band_text"], font=big)
    return np.asarray(img, dtype=np.uint8)


# ---------------------------------------------------------------------------------------------------------
# The gymnasium env


def _clean_feedback(text: str) -> str:
    """The engine's feedback without the welcome banner and the task line (the prompt shows the task)."""
    text = text.replace("-= Welcome to TextWorld, ALFRED! =-", "")
    text = re.sub(r"Your task is to: .*", "", text)
    return " ".join(text.split())


class ALFWorldEnv(TaskEnv):
    """ALFWorld games through the TextWorld engine; `actions` are the current admissible commands.

    step() takes an index into `actions` or a command string; a string that is not admissible (or an
    index out of range) costs -1 and changes nothing. reset(seed) picks a game deterministically from the
    game directory; options={"game": i} picks game i of `games` instead. The games are `game_dir`, else the
    `split` folder ("train" or "heldout") under `games_root` (see split_dir).
    """

    metadata = {"render_modes": ["rgb_array"]}
    text_actions = True
    success_in_info = True
    takes_games_root = True
    own_prompt = True
    numbered_actions = True

    def __init__(
        self,
        game_dir: str | os.PathLike | None = None,
        split: str = "train",
        games_root: str | os.PathLike | None = None,
        image_size: int = 300,
        images: bool = True,
        max_steps: int = MAX_STEPS,
        task_types: Sequence[str] | None = None,
        history: int = 3,
        render_mode: str | None = "rgb_array",
    ) -> None:
        game_dir = game_dir or split_dir(split, games_root)
        self.games = find_games(game_dir, task_types)
        if not self.games:
            raise FileNotFoundError(f"no playable ALFWorld games under {game_dir}")
        self.game_dir = Path(os.path.expandvars(str(game_dir))).expanduser().resolve()
        self.image_size = image_size
        self.images = images
        self.max_steps = max_steps
        self.history = history
        self.render_mode = render_mode
        shape = (image_size, image_size, 3) if images else (1, 1, 3)
        self.observation_space = spaces.Box(0, 255, shape=shape, dtype=np.uint8)
        self.action_space = spaces.Discrete(1)
        self.actions: list[str] = []
        self._engine: Engine | None = Engine.acquire()
        self._loaded: Path | None = None
        self._game: dict[str, Any] = {}
        self.task = Task("", "")
        self.steps = 0
        self._log: list[tuple[str, str]] = []  # (command, feedback) since reset; command "" at the start
        self._world = World()
        self._won = False

    # -- gym API ------------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        index = int(options["game"]) if "game" in options else int(self.np_random.integers(len(self.games)))
        path = self.games[index % len(self.games)]
        if self._engine is None:  # reset after close
            self._engine, self._loaded = Engine.acquire(), None
        if path != self._loaded:
            self._game, self.task = load_game(path)
            self._engine.load(self._game)
            self._loaded = path
        self.game_index = index % len(self.games)
        feedback = _clean_feedback(self._engine.reset())
        self.steps = 0
        self._log = [("", feedback)]
        self._sync()
        return self._obs(), self._info(admissible=True)

    def step(self, action: int | str):
        if isinstance(action, str):
            command = " ".join(action.strip().lower().split())
        elif 0 <= int(action) < len(self.actions):
            command = self.actions[int(action)]
        else:
            command = ""
        admissible = command in self.actions
        if admissible:
            feedback = _clean_feedback(self._engine.step(command))
            self._sync()
        else:
            feedback = "Nothing happens."  # what the engine answers; the state does not change
        self._log.append(
            (command if admissible or COMMAND_TEXT.fullmatch(command) else NOT_A_COMMAND, feedback)
        )
        self.steps += 1
        met, total = goal_conditions(self._world, self.task)
        reward = WIN_REWARD * self._won + met / total + (0.0 if admissible else INADMISSIBLE_PENALTY)
        terminated = self._won
        truncated = not terminated and self.steps >= self.max_steps
        return self._obs(), float(reward), terminated, truncated, self._info(admissible)

    def render(self) -> np.ndarray:
        return render_world(self._world, self.image_size)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.release()
            self._engine = None

    # -- what the prompt and the oracle need ---------------------------------------------------------------
    def state_text(self) -> str:
        """Task, the last `history` commands with their feedback, location and inventory, and the admissible
        commands numbered from 1 (a response names one by its number: a tiny model miscopies a command).
        The number follows its command (`go to drawer 1 (7)`): thoughts that end with a listed line end with
        its number, so the model copies the number from the list after the command instead of recalling
        which number a command has (after SFT with the number first, the answer's number named the
        thoughts' own command on 6.5% of steps)."""
        lines = [f"Your task is to: {self.task.text}."]
        for command, feedback in self._log[max(0, len(self._log) - self.history) :]:
            if command:
                lines.append(f"> {command}")
            lines.append(feedback)
        lines.append(f"You are {self._where()}, carrying {self._world.held or 'nothing'}.")
        lines.append("Admissible actions:")
        lines += [f"{a} ({i})" for i, a in enumerate(self.actions, 1)]
        return "\n".join(lines)

    def oracle_command(self) -> str:
        return expert_command(self._world, self.task)

    def oracle_action(self) -> int:
        """Index in `actions` of the expert's next command (always a legal index)."""
        command = self.oracle_command()
        for candidate in (command, "look"):
            if candidate in self.actions:
                return self.actions.index(candidate)
        return 0

    def oracle_thoughts(self, index: int) -> str:
        """A short chain of thought for demos: where the agent is, what it holds, and action `index` as the
        prompt lists it (command, then number)."""
        held = self._world.held or "nothing"
        return f"I am {self._where()}, carrying {held}. Next: {self.actions[index]} ({index + 1})."

    @staticmethod
    def prompt(state_text: str, cot: bool) -> str:
        return alfworld_prompt(state_text, cot)

    def oracle_response(self, cot: bool) -> str:
        return alfworld_oracle_response(self, cot)

    @property
    def walkthrough(self) -> list[str]:
        return list(self._game.get("walkthrough") or [])

    # -- internals ---------------------------------------------------------------------------------------
    def _where(self) -> str:
        here = self._world.here()
        return "at " + ", ".join(here) if here else "in the middle of the room"

    def _sync(self) -> None:
        self._world = self._engine.world()
        self._won = self._engine.won
        self.actions = self._engine.admissible
        self.action_space = spaces.Discrete(len(self.actions))

    def _obs(self) -> np.ndarray:
        if not self.images:
            return np.zeros((1, 1, 3), dtype=np.uint8)
        return self.render()

    def _info(self, admissible: bool) -> dict[str, Any]:
        met, total = goal_conditions(self._world, self.task)
        return {
            "task_type": self.task.task_type,
            "task": self.task.text,
            "game": str(self._loaded.parent.relative_to(self.game_dir)) if self._loaded else "",
            "feedback": self._log[-1][1] if self._log else "",
            "admissible_commands": list(self.actions),
            "admissible": admissible,
            "won": self._won,
            "success": self._won,
            "goal_condition_success_rate": met / total,
            "steps": self.steps,
        }


# ---------------------------------------------------------------------------------------------------------
# Prompt text and registration


def alfworld_prompt(state_text: str, cot: bool) -> str:
    """The task prompt for ALFWorld (no chat template), in the reference's JSON output format."""
    head = (
        "You are an expert agent in the ALFRED embodied household environment. The image shows where you "
        "are, what you can see there and what you are holding. You are also given a text description of "
        "the current scene.\n"
    )
    if cot:
        fmt = (
            '{\n"thoughts": "{first describe what you see in the image using the text description, then think '
            "carefully about which admissible action brings you closer to completing the task, and end with "
            'that action as listed}",\n'
            '"action": "{the number of an admissible action}"\n}'
        )
    else:
        fmt = '{\n"action": "{the number of an admissible action}"\n}'
    return f"{head}{state_text}\nYour response should be a valid json file in the following format:\n{fmt}"


def alfworld_oracle_response(env: gym.Env, cot: bool) -> str:
    """The oracle's response in the prompt's output format (for demos)."""
    u = env.unwrapped
    index = u.oracle_action()  # the expert plans once per step
    if cot:
        return json.dumps({"thoughts": u.oracle_thoughts(index), "action": u.answer(index)})
    return json.dumps({"action": u.answer(index)})


def register() -> None:
    """Register vlmagent/ALFWorld-v0 (train games) and vlmagent/ALFWorldHeldout-v0 (held-out games)."""
    entry = "vlmagent.envs.alfworld:ALFWorldEnv"
    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point=entry, kwargs={"split": "train"})
    if HELDOUT_ENV_ID not in gym.registry:
        gym.register(HELDOUT_ENV_ID, entry_point=entry, kwargs={"split": "heldout"})

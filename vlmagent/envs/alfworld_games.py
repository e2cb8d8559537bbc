"""Our own ALFWorld games: PDDL problems over the alfworld package's domain, in the game.tw-pddl format.

The official games come from ALFRED's AI2-THOR scenes and are downloaded by `alfworld-download`, which
needs the internet. These are small rooms (a kitchen, a bedroom, a bathroom) with a few receptacles and
objects, randomised by seed, for each of the six task types. Every game is verified by playing the
expert through the real engine to `won`; its commands are stored as the game's walkthrough.

    generate_games("data/alfworld/train", n_per_type=4, seed=0)

writes `<out>/<task_type>-<Object>-None-<Parent>-<scene>/trial_<seed>/{game.tw-pddl,traj_data.json}`,
the official layout, so ALFWorld's own AlfredTWEnv can load them too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from vlmagent.envs.alfworld import MAX_STEPS, TASK_TYPES, Task, play

OPENABLE = {"cabinet", "drawer", "fridge", "microwave", "safe"}
# PDDL type names in ALFRED's spelling (PDDL itself is case-insensitive; traj_data uses these).
CAMEL = {
    "alarmclock": "AlarmClock", "armchair": "ArmChair", "bathtubbasin": "BathtubBasin",
    "butterknife": "ButterKnife", "cellphone": "CellPhone", "coffeemachine": "CoffeeMachine",
    "coffeetable": "CoffeeTable", "countertop": "CounterTop", "creditcard": "CreditCard",
    "desklamp": "DeskLamp", "diningtable": "DiningTable", "dishsponge": "DishSponge",
    "garbagecan": "GarbageCan", "handtowel": "HandTowel", "handtowelholder": "HandTowelHolder",
    "keychain": "KeyChain", "peppershaker": "PepperShaker", "remotecontrol": "RemoteControl",
    "saltshaker": "SaltShaker", "scrubbrush": "ScrubBrush", "sidetable": "SideTable",
    "sinkbasin": "SinkBasin", "soapbar": "SoapBar", "soapbottle": "SoapBottle",
    "spraybottle": "SprayBottle", "stoveburner": "StoveBurner", "tissuebox": "TissueBox",
    "toiletpaper": "ToiletPaper", "toiletpaperhanger": "ToiletPaperHanger", "towelholder": "TowelHolder",
    "winebottle": "WineBottle", "cd": "CD",
}  # fmt: skip
# Types the domain names as constants: every problem must declare them or loading fails.
CONSTANT_RTYPES = ("SinkBasinType", "MicrowaveType", "FridgeType")
CONSTANT_OTYPES = ("KnifeType", "ButterKnifeType")


def camel(name: str) -> str:
    return CAMEL.get(name, name.capitalize())


@dataclass(frozen=True)
class Obj:
    """An object type: where it may be put, and which state changes it allows."""

    where: frozenset[str]
    # Of cleanable heatable coolable sliceable toggleable; every object but a lamp is also pickupable.
    props: frozenset[str] = frozenset()


def _o(where: str, props: str = "") -> Obj:
    return Obj(frozenset(where.split()), frozenset(props.split()))


FOOD = "countertop diningtable fridge microwave sinkbasin garbagecan"
DISH = "countertop diningtable cabinet shelf fridge microwave sinkbasin"
CUTLERY = "countertop diningtable drawer sinkbasin"
SMALL = "desk sidetable dresser drawer shelf coffeetable"
SCENES: dict[str, dict[str, Any]] = {
    "kitchen": {
        # receptacle type -> (min, max) count
        "receptacles": {
            "cabinet": (1, 3),
            "drawer": (1, 2),
            "countertop": (1, 2),
            "diningtable": (0, 1),
            "fridge": (1, 1),
            "microwave": (1, 1),
            "sinkbasin": (1, 1),
            "stoveburner": (0, 2),
            "garbagecan": (1, 1),
            "coffeemachine": (0, 1),
            "shelf": (0, 1),
        },
        "objects": {
            "apple": _o(FOOD, "cleanable heatable coolable sliceable"),
            "tomato": _o(FOOD, "cleanable heatable coolable sliceable"),
            "potato": _o(FOOD, "cleanable heatable coolable sliceable"),
            "egg": _o(FOOD, "cleanable heatable coolable"),
            "bread": _o("countertop diningtable fridge microwave garbagecan", "heatable coolable sliceable"),
            "lettuce": _o(
                "countertop diningtable fridge sinkbasin garbagecan", "cleanable coolable sliceable"
            ),
            "mug": _o(DISH + " coffeemachine", "cleanable heatable coolable"),
            "cup": _o(DISH, "cleanable heatable coolable"),
            "plate": _o(DISH, "cleanable heatable coolable"),
            "bowl": _o(DISH, "cleanable heatable coolable"),
            "fork": _o(CUTLERY, "cleanable"),
            "spoon": _o(CUTLERY, "cleanable"),
            "knife": _o(CUTLERY, "cleanable"),
            "butterknife": _o(CUTLERY, "cleanable"),
            "spatula": _o(CUTLERY, "cleanable"),
            "ladle": _o(CUTLERY, "cleanable"),
            "dishsponge": _o("countertop diningtable drawer cabinet sinkbasin garbagecan", "cleanable"),
            "saltshaker": _o("countertop diningtable drawer cabinet shelf"),
            "peppershaker": _o("countertop diningtable drawer cabinet shelf"),
            "soapbottle": _o("countertop diningtable cabinet shelf garbagecan"),
            "pan": _o("countertop diningtable cabinet stoveburner fridge sinkbasin", "cleanable coolable"),
            "pot": _o("countertop diningtable cabinet stoveburner fridge sinkbasin", "cleanable coolable"),
            "winebottle": _o("countertop diningtable cabinet fridge shelf garbagecan", "coolable"),
        },
    },
    "bedroom": {
        "receptacles": {
            "bed": (1, 1),
            "desk": (0, 1),
            "sidetable": (1, 2),
            "dresser": (0, 1),
            "drawer": (1, 3),
            "shelf": (1, 2),
            "armchair": (0, 1),
            "sofa": (0, 1),
            "coffeetable": (0, 1),
            "garbagecan": (1, 1),
            "safe": (0, 1),
        },
        "objects": {
            "book": _o("bed desk sidetable dresser shelf sofa armchair coffeetable"),
            "cellphone": _o("bed sofa armchair " + SMALL),
            "creditcard": _o(SMALL + " armchair garbagecan"),
            "keychain": _o(SMALL + " safe"),
            "remotecontrol": _o("sofa armchair " + SMALL),
            "cd": _o(SMALL + " safe garbagecan"),
            "pen": _o(SMALL + " garbagecan"),
            "pencil": _o(SMALL + " garbagecan"),
            "watch": _o(SMALL + " safe"),
            "alarmclock": _o("desk sidetable dresser shelf"),
            "pillow": _o("bed sofa armchair"),
            "laptop": _o("bed desk sofa armchair coffeetable dresser"),
            "vase": _o("desk sidetable dresser shelf coffeetable safe"),
            "statue": _o("desk sidetable dresser shelf coffeetable"),
            "tissuebox": _o("desk sidetable dresser shelf coffeetable garbagecan"),
            "desklamp": _o("desk sidetable dresser", "toggleable"),
        },
    },
    "bathroom": {
        "receptacles": {
            "toilet": (1, 1),
            "sinkbasin": (1, 2),
            "bathtubbasin": (0, 1),
            "countertop": (1, 1),
            "cabinet": (1, 3),
            "drawer": (0, 2),
            "towelholder": (0, 1),
            "handtowelholder": (0, 1),
            "garbagecan": (1, 1),
            "toiletpaperhanger": (0, 1),
            "shelf": (0, 2),
        },
        "objects": {
            "soapbar": _o(
                "countertop sinkbasin bathtubbasin toilet cabinet drawer shelf garbagecan", "cleanable"
            ),
            "soapbottle": _o("countertop toilet cabinet drawer shelf garbagecan"),
            "spraybottle": _o("countertop toilet cabinet drawer shelf garbagecan"),
            "toiletpaper": _o("countertop toilet cabinet drawer shelf garbagecan toiletpaperhanger"),
            "candle": _o("countertop toilet cabinet drawer shelf"),
            "cloth": _o(
                "countertop sinkbasin bathtubbasin toilet cabinet drawer shelf garbagecan", "cleanable"
            ),
            "dishsponge": _o("countertop sinkbasin cabinet drawer shelf", "cleanable"),
            "handtowel": _o("handtowelholder countertop cabinet"),
            "towel": _o("towelholder countertop cabinet"),
            "tissuebox": _o("countertop toilet cabinet shelf garbagecan"),
            "scrubbrush": _o("countertop cabinet shelf"),
        },
    },
}
# Which scenes can host each task, and the state a transform task needs.
TASK_SCENES = {
    "pick_and_place_simple": ("kitchen", "bedroom", "bathroom"),
    "look_at_obj_in_light": ("bedroom",),
    "pick_clean_then_place_in_recep": ("kitchen", "bathroom"),
    "pick_heat_then_place_in_recep": ("kitchen",),
    "pick_cool_then_place_in_recep": ("kitchen",),
    "pick_two_obj_and_place": ("kitchen", "bedroom", "bathroom"),
}
TASK_NEEDS = {
    "pick_clean_then_place_in_recep": ("cleanable", "sinkbasin"),
    "pick_heat_then_place_in_recep": ("heatable", "microwave"),
    "pick_cool_then_place_in_recep": ("coolable", "fridge"),
}
# ALFWorld's templated task wordings.
TEMPLATES = {
    "pick_and_place_simple": ("put a {obj} in {recep}", "put some {obj} on {recep}"),
    "look_at_obj_in_light": ("look at {obj} under the {toggle}", "examine the {obj} with the {toggle}"),
    "pick_clean_then_place_in_recep": (
        "put a clean {obj} in {recep}",
        "clean some {obj} and put it in {recep}",
    ),
    "pick_heat_then_place_in_recep": ("put a hot {obj} in {recep}", "heat some {obj} and put it in {recep}"),
    "pick_cool_then_place_in_recep": ("put a cool {obj} in {recep}", "cool some {obj} and put it in {recep}"),
    "pick_two_obj_and_place": ("put two {obj} in {recep}", "find two {obj} and put them in {recep}"),
}
# The PDDL goals, with the semantics of ALFWorld's goal library.
_PLACE = "(exists (?r - receptacle) (exists (?o - object) (and {extra}(objectType ?o {O}Type) (receptacleType ?r {R}Type) (inReceptacle ?o ?r))))"
GOALS = {
    "pick_and_place_simple": _PLACE.replace("{extra}", ""),
    "pick_clean_then_place_in_recep": _PLACE.replace("{extra}", "(cleanable ?o) (isClean ?o) "),
    "pick_heat_then_place_in_recep": _PLACE.replace("{extra}", "(heatable ?o) (isHot ?o) "),
    "pick_cool_then_place_in_recep": _PLACE.replace("{extra}", "(coolable ?o) (isCool ?o) "),
    "pick_two_obj_and_place": (
        "(exists (?r - receptacle) (exists (?o1 - object) (and (objectType ?o1 {O}Type) (receptacleType ?r {R}Type)"
        " (inReceptacle ?o1 ?r) (exists (?o2 - object) (and (not (= ?o1 ?o2)) (objectType ?o2 {O}Type)"
        " (inReceptacle ?o2 ?r))))))"
    ),
    "look_at_obj_in_light": (
        "(and (exists (?t - object ?r - receptacle ?a - agent ?l - location) (and (objectType ?t {T}Type)"
        " (toggleable ?t) (isToggled ?t) (receptacleAtLocation ?r ?l) (atLocation ?a ?l) (inReceptacle ?t ?r)))"
        " (exists (?o - object ?a - agent) (and (objectType ?o {O}Type) (holds ?a ?o))))"
    ),
}


def domain_text() -> str:
    return (resources.files("alfworld") / "data" / "alfred.pddl").read_text()


def grammar_text() -> str:
    return (resources.files("alfworld") / "data" / "alfred.twl2").read_text()


@dataclass
class Layout:
    """One generated game before it is written out."""

    scene: str
    task: Task
    receptacles: list[tuple[str, int]]  # (type, display number)
    objects: list[tuple[str, int, tuple[str, int]]]  # (type, display number, receptacle)


def _pddl_id(kind: str, k: int, n: int) -> str:
    # ALFWorld's demangler numbers ids of a kind in reverse sorted order: suffix n-k displays as "kind k".
    if kind in ("sinkbasin", "bathtubbasin"):
        base = kind.removesuffix("basin").capitalize()
        return f"{base}_bar_{n - k:02d}_bar_{camel(kind)}"
    return f"{camel(kind)}_bar_{n - k:02d}"


def _place(rng: np.random.Generator, receps: list[tuple[str, int]], allowed: list[str]) -> tuple[str, int]:
    """A random receptacle (type, number) among those of the allowed types."""
    options = [(r, k) for r, k in receps if r in allowed]
    return options[int(rng.integers(len(options)))]


def sample_layout(task_type: str, rng: np.random.Generator) -> Layout:
    """Draw a room and a task of `task_type` that is solvable and not already solved at the start."""
    for _ in range(1000):
        scene = str(rng.choice(TASK_SCENES[task_type]))
        spec = SCENES[scene]
        counts = {r: int(rng.integers(lo, hi + 1)) for r, (lo, hi) in spec["receptacles"].items()}
        present = {r for r, c in counts.items() if c > 0}
        receps = [(r, k) for r, c in counts.items() for k in range(1, c + 1)]
        objects: dict[str, Obj] = spec["objects"]
        prop, appliance = TASK_NEEDS.get(task_type, ("", ""))
        if appliance and appliance not in present:
            continue
        candidates = sorted(
            o
            for o, spec_o in objects.items()
            if "toggleable" not in spec_o.props
            and (not prop or prop in spec_o.props)
            and spec_o.where & present
        )
        obj = str(rng.choice(candidates))
        toggle = ""
        if task_type == "look_at_obj_in_light":
            parent = ""
            sources = sorted(objects[obj].where & present)
        else:
            banned = {appliance, "garbagecan"} if appliance else set()
            parents = sorted((objects[obj].where & present) - banned)
            if not parents:
                continue
            parent = str(rng.choice(parents))
            sources = sorted((objects[obj].where & present) - {parent})
        if not sources:
            continue

        n_targets = 2 if task_type == "pick_two_obj_and_place" else 1 + int(rng.random() < 0.3)
        placed: list[tuple[str, tuple[str, int]]] = [
            (obj, _place(rng, receps, sources)) for _ in range(n_targets)
        ]
        if task_type == "look_at_obj_in_light":
            toggle = "desklamp"
            lamp_at = sorted(objects[toggle].where & present)
            if not lamp_at:
                continue
            placed.append((toggle, _place(rng, receps, lamp_at)))
        # Distractors of other types; none may pre-solve the task since only targets have the target type.
        others = sorted(
            o for o, s in objects.items() if o not in (obj, toggle, "desklamp") and s.where & present
        )
        for other in rng.choice(others, size=min(len(others), int(rng.integers(4, 9))), replace=False):
            placed.append((str(other), _place(rng, receps, sorted(objects[str(other)].where & present))))
        numbered: list[tuple[str, int, tuple[str, int]]] = []
        seen: dict[str, int] = {}
        for kind, at in placed:
            seen[kind] = seen.get(kind, 0) + 1
            numbered.append((kind, seen[kind], at))
        template = TEMPLATES[task_type][int(rng.integers(2))]
        text = template.format(obj=obj, recep=parent, toggle=toggle)
        return Layout(scene, Task(task_type, obj, parent, toggle, text), receps, numbered)
    raise RuntimeError(f"could not sample a {task_type} game")


def problem_pddl(layout: Layout, name: str) -> str:
    """The PDDL problem of a layout over alfworld's domain."""
    spec = SCENES[layout.scene]
    n_recep = {r: max(k for kind, k in layout.receptacles if kind == r) for r, _ in layout.receptacles}
    n_obj = {o: max(k for kind, k, _ in layout.objects if kind == o) for o, _, _ in layout.objects}
    rid = {(r, k): _pddl_id(r, k, n_recep[r]) for r, k in layout.receptacles}
    loc = {(r, k): f"loc_bar_{i + 1:02d}" for i, (r, k) in enumerate(layout.receptacles)}
    rtypes = sorted({camel(r) + "Type" for r in n_recep} | set(CONSTANT_RTYPES))
    otypes = sorted({camel(o) + "Type" for o in n_obj} | set(CONSTANT_OTYPES))
    objects = ["agent1 - agent", "loc_bar_00 - location"]
    objects += [f"{t} - rtype" for t in rtypes] + [f"{t} - otype" for t in otypes]
    objects += [f"{rid[r]} - receptacle" for r in layout.receptacles] + [
        f"{loc[r]} - location" for r in layout.receptacles
    ]
    init = ["(atLocation agent1 loc_bar_00)"]
    for r in layout.receptacles:
        init += [f"(receptacleType {rid[r]} {camel(r[0])}Type)", f"(receptacleAtLocation {rid[r]} {loc[r]})"]
        if r[0] in OPENABLE:
            init.append(f"(openable {rid[r]})")
    for kind, k, at in layout.objects:
        oid = _pddl_id(kind, k, n_obj[kind])
        objects.append(f"{oid} - object")
        init += [
            f"(objectType {oid} {camel(kind)}Type)",
            f"(inReceptacle {oid} {rid[at]})",
            f"(objectAtLocation {oid} {loc[at]})",
        ]
        props = spec["objects"][kind].props
        if "toggleable" not in props:
            init.append(f"(pickupable {oid})")
        init += [f"({p} {oid})" for p in sorted(props)]
    for o in sorted(n_obj):
        for r in sorted(n_recep):
            if r in spec["objects"][o].where:
                init.append(f"(canContain {camel(r)}Type {camel(o)}Type)")
    t = layout.task
    goal = GOALS[t.task_type].format(O=camel(t.obj), R=camel(t.parent), T=camel(t.toggle))
    body = "\n        ".join
    return (
        f"(define (problem {name})\n(:domain alfred)\n(:objects\n        {body(objects)}\n        )\n"
        f"(:init\n        {body(init)}\n        )\n(:goal\n    {goal}\n    )\n)\n"
    )


def traj_data(layout: Layout, seed: int) -> dict[str, Any]:
    t = layout.task
    return {
        "task_type": t.task_type,
        "pddl_params": {
            "object_target": camel(t.obj),
            "parent_target": camel(t.parent) if t.parent else "",
            "toggle_target": camel(t.toggle) if t.toggle else "",
            "mrecep_target": "",
            "object_sliced": False,
        },
        "task_desc": t.text,
        "scene": {"kind": layout.scene, "generator": "vlmagent.envs.alfworld_games", "seed": seed},
    }


def make_game(task_type: str, seed: int) -> tuple[dict[str, Any], dict[str, Any], Layout]:
    """(game.tw-pddl dict, traj_data dict, layout) for one seed, verified through the engine.

    Raises RuntimeError when the expert does not win within the step limit (the caller draws again).
    """
    rng = np.random.default_rng(seed)
    layout = sample_layout(task_type, rng)
    game = {
        "pddl_domain": domain_text(),
        "grammar": grammar_text().replace("UNKNOWN GOAL", layout.task.text),
        "pddl_problem": problem_pddl(layout, f"vlmagent_{task_type}_{seed}"),
    }
    commands, won, rates = play(game, layout.task, MAX_STEPS)
    # Verified: the expert wins, and the goal-condition rate reaches 1.0 exactly when it does.
    if not won or not rates or rates[-1] != 1.0 or any(r >= 1.0 for r in rates[:-1]):
        raise RuntimeError(f"{task_type} seed {seed}: expert did not win ({commands})")
    game["walkthrough"] = commands
    game["solvable"] = True
    return game, traj_data(layout, seed), layout


def generate_games(
    out_dir: str | os.PathLike,
    n_per_type: int,
    seed: int = 0,
    task_types: tuple[str, ...] = TASK_TYPES,
    on_game: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Write `n_per_type` verified games of each task type under `out_dir`; return their game files.

    Deterministic in `seed`: game k of task type i uses the seed SeedSequence([seed, i, k, attempt]), so
    games 0..n-1 of a larger set are those of a smaller one. `on_game(path)` is called after each game.
    """
    out = Path(out_dir)
    written = []
    for task_type in task_types:
        for k in range(n_per_type):
            for attempt in range(20):
                key = [seed, TASK_TYPES.index(task_type), k, attempt]
                game_seed = int(np.random.SeedSequence(key).generate_state(1)[0])
                try:
                    game, traj, layout = make_game(task_type, game_seed)
                    break
                except RuntimeError:
                    continue
            else:
                raise RuntimeError(f"no solvable {task_type} game after 20 draws")
            t = layout.task
            folder = out / (
                f"{task_type}-{camel(t.obj)}-None-{camel(t.parent or t.toggle)}-{layout.scene}"
                + f"/trial_{game_seed:010d}"
            )
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "game.tw-pddl").write_text(json.dumps(game))
            (folder / "traj_data.json").write_text(json.dumps(traj, indent=1) + "\n")
            written.append(folder / "game.tw-pddl")
            if on_game is not None:
                on_game(folder / "game.tw-pddl")
    return written

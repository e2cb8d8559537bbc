"""The four gym_cards tasks as gymnasium envs, registered as vlmagent/<Task>-v0 on import.

Every env (unwrapped) is a `TaskEnv` (vlmagent.envs.base: its capabilities as class attributes, read
with `env_class`): `actions` (legal action strings in the reference order, Discrete space),
RGB uint8 observations (image_size x image_size, default 300), `state_text()`, `oracle_action()` and
JSON-serialisable info dicts (with "success" on the step that ends an episode).
"""

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator

from vlmagent.envs import alfworld
from vlmagent.envs.base import TaskEnv
from vlmagent.envs.blackjack import BlackjackEnv
from vlmagent.envs.ezpoints import EZPointsEnv
from vlmagent.envs.formula import evaluate, solve
from vlmagent.envs.numberline import NumberLineEnv
from vlmagent.envs.points24 import Points24Env

ENV_IDS: dict[str, str] = {
    "numberline": "vlmagent/NumberLine-v0",
    "ezpoints": "vlmagent/EZPoints-v0",
    "points24": "vlmagent/Points24-v0",
    "blackjack": "vlmagent/Blackjack-v0",
}
_CLASSES = {
    "numberline": NumberLineEnv,
    "ezpoints": EZPointsEnv,
    "points24": Points24Env,
    "blackjack": BlackjackEnv,
}
CARD_ENVS = tuple(_CLASSES)
# legal action strings of each card env, in the reference (= Discrete index) order; ALFWorld's
# (admissible commands) change every step: env.unwrapped.actions
ACTIONS: dict[str, list[str]] = {name: list(cls.actions) for name, cls in _CLASSES.items()}

for _name, _id in ENV_IDS.items():
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=f"{_CLASSES[_name].__module__}:{_CLASSES[_name].__name__}")

# ALFWorld: the module imports textworld only when an env is made, so registering costs nothing.
alfworld.register()
ENV_IDS.update(alfworld.ENV_IDS)
# where eval plays by default: held-out games for ALFWorld; card envs hold out seeds instead
HELDOUT_ENV = {"alfworld": "alfworld-heldout"}


def env_name(name: str) -> str:
    """The short name ("numberline", ...) for a short name or a gym id; ValueError otherwise."""
    if name in ENV_IDS:
        return name
    for short, env_id in ENV_IDS.items():
        if name == env_id:
            return short
    known = ", ".join(f"{short} ({env_id})" for short, env_id in ENV_IDS.items())
    raise ValueError(f"unknown env {name!r}; known envs: {known}")


def env_class(name: str) -> type[TaskEnv]:
    """The env class registered for a short name or gym id, without making an env (ALFWorld's would start
    its engine): what the stages read an env's capabilities from."""
    return load_env_creator(gym.spec(ENV_IDS[env_name(name)]).entry_point)


def make_env(name: str, **kwargs) -> gym.Env:
    """gym.make by short name or gym id, e.g. make_env("points24", image_size=128)."""
    return gym.make(ENV_IDS[env_name(name)], **kwargs)


__all__ = [
    "ACTIONS",
    "CARD_ENVS",
    "ENV_IDS",
    "HELDOUT_ENV",
    "BlackjackEnv",
    "EZPointsEnv",
    "NumberLineEnv",
    "Points24Env",
    "TaskEnv",
    "env_class",
    "env_name",
    "evaluate",
    "make_env",
    "solve",
]

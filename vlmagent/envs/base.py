"""The env base: what the stages read off an env besides gymnasium's API, its capabilities as class
attributes, so that no stage asks for an env by name.

Read them off the class (`vlmagent.envs.env_class(name)`: no env is made, and ALFWorld's needs its
engine) or off `env.unwrapped`.
"""

import gymnasium as gym


class TaskEnv(gym.Env):
    """An env the agent plays: `actions` (the legal action strings), `state_text()` (the state as text
    for the prompt), `oracle_action()` (the index in `actions` of the expert's move)."""

    actions: list[str]
    # step() also takes a response's raw text and judges it itself (ALFWorld: a command that is not
    # admissible costs -1 and changes nothing), so an unparsed response is stepped as written
    text_actions: bool = False
    # an episode's success is its last step's info["success"], not the paper's return > 0 (ALFWorld pays
    # the goal-condition rate every step: a lost game can have a positive return)
    success_in_info: bool = False
    # __init__ takes `games_root`, the directory of game files (run.toml's alfworld_games)
    takes_games_root: bool = False
    # the env writes its own prompt (`prompt(state_text, cot)`) and oracle response
    # (`oracle_response(cot)`); otherwise vlmagent.prompts writes them (the card tasks)
    own_prompt: bool = False
    # the prompt numbers the legal actions 1, 2, ... and a response names one by its number
    numbered_actions: bool = False

    def answer(self, index: int) -> str:
        """What a response writes to name actions[index]: its number in the prompt's list, or its text."""
        return str(index + 1) if self.numbered_actions else self.actions[index]

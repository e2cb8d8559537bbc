"""NumberLine: move the current number to the target with "-" and "+" (gym_cards NumberLine-v0 rules)."""

from functools import lru_cache
from typing import Any

import gymnasium as gym
import numpy as np
from PIL import Image, ImageDraw

from vlmagent.envs.base import TaskEnv
from vlmagent.envs.cards import font


@lru_cache(maxsize=256)
def _frame(target: int, current: int, size: int) -> np.ndarray:
    # Only (max+1)^2 distinct frames exist: draw each once.
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    f, stroke = font(int(0.12 * size)), round(size / 300)  # a stroke makes the thin font bold
    for y, text in ((0.3, f"Target: {target}"), (0.65, f"Current: {current}")):
        draw.text((0.1 * size, y * size), text, fill="black", font=f, anchor="lm", stroke_width=stroke)
    frame = np.array(img)
    frame.flags.writeable = False  # shared between calls: copied before it is handed out
    return frame


class NumberLineEnv(TaskEnv):
    """Positions 0..max_position, start != target. Reward +1 on reaching the target (terminated), -1 when a
    move does not bring the current number closer (including bumping into a bound), 0 otherwise.
    Truncated after 2 * max_position steps."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}
    actions = ["-", "+"]

    def __init__(self, max_position: int = 5, image_size: int = 300, render_mode: str | None = None):
        if max_position < 1:
            raise ValueError(f"max_position must be >= 1, got {max_position}")
        self.max_position, self.image_size, self.render_mode = max_position, image_size, render_mode
        self.actions = list(type(self).actions)
        self.action_space = gym.spaces.Discrete(len(self.actions))
        self.observation_space = gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self.target, self.current, self.steps = 0, 1, 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.current = int(self.np_random.integers(self.max_position + 1))
        # target uniform over the other positions, in one draw
        n = self.max_position + 1
        self.target = (self.current + int(self.np_random.integers(1, n))) % n
        self.steps = 0
        return self.render(), self._info()

    def step(self, action: int):
        move = self.actions[int(action)]
        before = abs(self.current - self.target)
        self.current = min(max(self.current + (1 if move == "+" else -1), 0), self.max_position)
        after = abs(self.current - self.target)
        self.steps += 1
        terminated = after == 0
        reward = 1.0 if terminated else (0.0 if after < before else -1.0)
        truncated = not terminated and self.steps >= 2 * self.max_position
        info = self._info()
        if terminated or truncated:
            info["success"] = terminated
        return self.render(), reward, terminated, truncated, info

    def render(self) -> np.ndarray:
        return _frame(self.target, self.current, self.image_size).copy()

    def state_text(self) -> str:
        return ""

    def oracle_action(self) -> int:
        """Toward the target ("+" when already there: any action is legal, the episode is over)."""
        return self.actions.index("-" if self.current > self.target else "+")

    def _info(self) -> dict[str, Any]:
        return {"target": self.target, "current": self.current, "steps": self.steps}

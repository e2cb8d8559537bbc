"""EZPoints: build a formula from two cards that equals 12 (gym_cards EZPoints-v0 rules).

Points24 (points24.py) is the same game with four cards, target 24, more operators and a longer formula,
so it subclasses this env and overrides the class constants and the deal.

Rules (the paper's): each step appends one token to the formula. A number is legal only if an unused
card has that value (J/Q/K count 10, A counts 1); an illegal number gives -1 and is NOT written into
the formula, but it still uses up one place of the formula's length budget (`length`), as in the
reference (which appended a blank). So an illegal card costs -1 and a step of the limit, and the
formula the agent sees stays a valid prefix. Operators are always accepted (a malformed formula is
caught at "="). "=" ends the episode: +10 when the formula uses every card and equals the target,
-1 otherwise. When `length` exceeds the limit the episode is truncated with -1 (the formula was
never finished; the reference also gave -1, one step later).
"""

from typing import Any

import gymnasium as gym
import numpy as np
from PIL import Image, ImageDraw

from vlmagent.envs import formula
from vlmagent.envs.base import TaskEnv
from vlmagent.envs.cards import RANKS, TABLE_GREEN, Card, card_name, card_value, fit_font, font, paste_card


class EZPointsEnv(TaskEnv):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}
    n_cards, target, max_length, ops = 2, 12, 5, "+*"
    label_y, formula_y, text_size = 0.8, 0.9, 0.075  # "Formula:" and the formula, as fractions of the size
    actions = [str(n) for n in range(1, 11)] + ["+", "*", "="]

    def __init__(self, image_size: int = 300, render_mode: str | None = None):
        self.image_size, self.render_mode = image_size, render_mode
        self.actions = list(type(self).actions)  # a copy: mutating it cannot change the class list
        self.action_space = gym.spaces.Discrete(len(self.actions))
        self.observation_space = gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self.cards: list[Card] = []
        self.formula: list[str] = []  # accepted tokens; "=" is never stored
        self.length = 0  # formula tokens + rejected illegal numbers: what the length limit counts
        self._table_key: tuple | None = None
        self._table: Image.Image | None = None
        self._solution_key: tuple | None = None
        self._solution: list[str] | None = None

    # --- the game -------------------------------------------------------------------------------
    def deal(self) -> list[Card]:
        """Two cards whose sum or product is 12 (the reference's scheme, drawn from self.np_random):
        the first card is 2..K; if its value divides 12, half the time the second makes the product 12,
        otherwise the sum. Then the two are shuffled."""
        rng = self.np_random
        first = RANKS[int(rng.integers(1, len(RANKS)))]  # no ace
        v = card_value(first)
        second_value = 12 // v if v in (2, 3, 4, 6) and rng.random() < 0.5 else 12 - v
        second = str(second_value) if second_value < 10 else ("10", "J", "Q", "K")[int(rng.integers(4))]
        cards = [(first, self._suit()), (second, self._suit())]
        return cards[::-1] if rng.random() < 0.5 else cards

    def _suit(self) -> str:
        return "SHDC"[int(self.np_random.integers(4))]

    def values(self) -> list[int]:
        return [card_value(rank) for rank, _ in self.cards]

    def unused_values(self) -> list[int]:
        left = self.values()
        for n in formula.numbers(self.formula):
            left.remove(n)  # the env only accepts numbers that are in `left`
        return left

    def is_solved(self, tokens: list[str]) -> bool:
        """Uses every card exactly once and equals the target (exact arithmetic)."""
        used_all = sorted(formula.numbers(tokens)) == sorted(self.values())
        return used_all and formula.evaluate(tokens) == self.target

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.cards = self.deal()
        self.formula, self.length = [], 0
        return self.render(), self._info()

    def step(self, action: int):
        token = self.actions[int(action)]
        if token == "=":
            success = self.is_solved(self.formula)
            info = self._info() | {"success": success}
            return self.render(), 10.0 if success else -1.0, True, False, info
        reward = 0.0
        if formula.is_number(token) and int(token) not in self.unused_values():
            reward = -1.0  # illegal card: rejected, but it still takes a place (see the module docstring)
        else:
            self.formula.append(token)
        self.length += 1
        truncated = self.length > self.max_length
        info = self._info()
        if truncated:
            reward, info["success"] = -1.0, False
        return self.render(), reward, False, truncated, info

    def state_text(self) -> str:
        return f"Formula: {''.join(self.formula)}".strip()

    def _info(self) -> dict[str, Any]:
        return {
            "cards": [card_name(c) for c in self.cards],
            "values": self.values(),
            "formula": "".join(self.formula),
            "length": self.length,
            "target": self.target,
        }

    # --- the oracle -----------------------------------------------------------------------------
    def solution(self) -> list[str] | None:
        """The solver's (shortest) solution for the deal, None when the deal has none. Cached per deal."""
        key = (tuple(self.values()), self.target, self.ops)
        if key != self._solution_key:
            self._solution_key, self._solution = key, formula.solve(self.values(), self.target, self.ops)
        return None if self._solution is None else list(self._solution)

    def solvable(self) -> bool:
        return self.solution() is not None

    def oracle_solution(self) -> list[str] | None:
        """A complete solution that extends the current formula, or None when there is none.

        The solver's own solution first; if the formula has left it, any solution that the formula
        is a prefix of (slow path, only off the oracle's own trajectory)."""
        n, solution = len(self.formula), self.solution()
        if self.is_solved(self.formula):
            return list(self.formula)
        if solution is None:
            return None  # no formula over these cards reaches the target
        if solution[:n] == self.formula:
            return solution
        for solution in formula.all_solutions(self.values(), self.target, self.ops):
            if solution[:n] == self.formula:
                return solution
        return None

    def oracle_action(self) -> int:
        """The next token of `oracle_solution()`; "=" once the formula is complete, and also when no
        solution exists or the formula can no longer be completed (ends the episode, -1)."""
        solution = self.oracle_solution()
        if solution is None or len(solution) <= len(self.formula):
            return self.actions.index("=")
        return self.actions.index(solution[len(self.formula)])

    # --- rendering ------------------------------------------------------------------------------
    def _card_boxes(self) -> list[tuple[float, float, int, int]]:
        """(x, y, width, height) of each card: side by side, centred above the formula."""
        s, n = self.image_size, max(len(self.cards), 1)
        margin, gap = 0.03 * s, 0.025 * s
        width = int(min(0.36 * s, (s - 2 * margin - (n - 1) * gap) / n))
        height = int(1.4 * width)
        left, top = (s - n * width - (n - 1) * gap) / 2, max((0.72 * s - height) / 2, 0.02 * s)
        return [(left + i * (width + gap), top, width, height) for i in range(len(self.cards))]

    def _table_image(self) -> Image.Image:
        # The cards do not change within an episode: draw the table once per deal.
        key = (tuple(self.cards), self.image_size)
        if key != self._table_key:
            s = self.image_size
            img = Image.new("RGB", (s, s), TABLE_GREEN)
            for card, (x, y, width, height) in zip(self.cards, self._card_boxes(), strict=True):
                paste_card(img, card, x, y, width, height)
            label = font(int(self.text_size * s))
            ImageDraw.Draw(img).text(
                (0.05 * s, self.label_y * s), "Formula:", fill="white", font=label, anchor="lm"
            )
            self._table_key, self._table = key, img
        return self._table

    def render(self) -> np.ndarray:
        img = self._table_image().copy()
        text = "".join(self.formula)
        if text:
            s = self.image_size
            f = fit_font(text, 0.9 * s, int((self.text_size + 0.01) * s))
            ImageDraw.Draw(img).text((0.05 * s, self.formula_y * s), text, fill="white", font=f, anchor="lm")
        return np.array(img)

"""Points24: build a formula from four cards that equals 24 (gym_cards Points24-v0 rules).

The EZPoints game (see ezpoints.py for the step rules) with four random cards, target 24, the
operators + - * / and parentheses, and a formula length limit of 20. Many deals have no solution
(about 1 in 5 with J/Q/K = 10): there the oracle answers "=" and `formula.solve` returns None.
"""

from vlmagent.envs.cards import Card, random_card
from vlmagent.envs.ezpoints import EZPointsEnv


class Points24Env(EZPointsEnv):
    n_cards, target, max_length, ops = 4, 24, 20, "+-*/"
    actions = [str(n) for n in range(1, 11)] + ["+", "-", "*", "/", "(", ")", "="]
    label_y, formula_y, text_size = 0.875, 0.95, 0.055  # below the second row of cards

    def _card_boxes(self) -> list[tuple[float, float, int, int]]:
        """Two rows of two cards, each 0.3 of the image wide, read left to right, top to bottom.

        Not a row of four: the tiny model reads cards 0.22 of the image wide far more slowly (the
        measurements: recipes/points24.toml and the README's Points24 notes)."""
        s = self.image_size
        width, gap = int(0.3 * s), 0.03 * s
        height = int(1.33 * width)
        left, top = (s - 2 * width - gap) / 2, 0.01 * s
        return [
            (left + (i % 2) * (width + gap), top + (i // 2) * (height + 0.02 * s), width, height)
            for i in range(len(self.cards))
        ]

    def deal(self) -> list[Card]:
        """Four independent cards from an infinite deck (uniform rank A..K, uniform suit)."""
        return [random_card(self.np_random) for _ in range(self.n_cards)]

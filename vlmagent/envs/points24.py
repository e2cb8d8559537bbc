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

    def deal(self) -> list[Card]:
        """Four independent cards from an infinite deck (uniform rank A..K, uniform suit)."""
        return [random_card(self.np_random) for _ in range(self.n_cards)]

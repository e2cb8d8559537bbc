"""Blackjack with a picture of the table (gymnasium Blackjack-v1 rules, natural=False, sab=False).

Infinite deck. The player sees the dealer's up card, the dealer's face-down card and their own cards.
"hit" draws a card (bust: -1, terminated); "stand" plays out the dealer, who draws while below 17
(a soft 17 stands, an ace counts 11 when that does not bust), and scores +1 win, -1 loss, 0 draw.
A natural blackjack gets no bonus and no automatic win (natural=False, sab=False).
"""

from typing import Any

import gymnasium as gym
import numpy as np
from PIL import Image, ImageDraw

from vlmagent.envs.base import TaskEnv
from vlmagent.envs.cards import TABLE_GREEN, Card, card_name, card_value, font, paste_card, random_card


def hand_total(cards: list[Card]) -> tuple[int, bool]:
    """(best total, soft): an ace counts 11 when that does not bust; soft means one does."""
    total = sum(card_value(rank) for rank, _ in cards)
    if any(rank == "A" for rank, _ in cards) and total + 10 <= 21:
        return total + 10, True
    return total, False


def basic_strategy(total: int, soft: bool, dealer_up: int) -> tuple[str, str]:
    """Infinite-deck basic strategy restricted to hit/stand (dealer stands on soft 17).

    dealer_up is the up card's value with the ace as 11. Returns (action, the rule that decided it).
    """
    if soft:
        if total >= 19:
            return "stand", "a soft 19 or more always stands"
        if total == 18:
            if dealer_up <= 8:
                return "stand", "a soft 18 stands against a dealer 2 to 8"
            return "hit", "a soft 18 hits against a dealer 9, 10 or ace"
        return "hit", "a soft 17 or less always hits (the ace protects against a bust)"
    if total >= 17:
        return "stand", "a hard 17 or more always stands"
    if total >= 13:
        if dealer_up <= 6:
            return "stand", "a hard 13 to 16 stands against a dealer 2 to 6 (the dealer may bust)"
        return "hit", "a hard 13 to 16 hits against a dealer 7 or higher"
    if total == 12:
        if 4 <= dealer_up <= 6:
            return "stand", "a hard 12 stands against a dealer 4 to 6"
        return "hit", "a hard 12 hits against a dealer 2, 3 or 7 and higher"
    return "hit", "a hard 11 or less cannot bust, so it always hits"


class BlackjackEnv(TaskEnv):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}
    actions = ["stand", "hit"]

    def __init__(self, image_size: int = 300, render_mode: str | None = None):
        self.image_size, self.render_mode = image_size, render_mode
        self.actions = list(type(self).actions)
        self.action_space = gym.spaces.Discrete(len(self.actions))
        self.observation_space = gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self.player: list[Card] = []
        self.dealer: list[Card] = []  # dealer[0] is the up card, dealer[1] the face-down one
        self._table_key: tuple | None = None
        self._table: Image.Image | None = None

    def draw_card(self) -> Card:
        """The next card of the infinite deck (tests replace this to script the deck)."""
        return random_card(self.np_random)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        # gymnasium's order: the dealer's two cards, then the player's two
        self.dealer = [self.draw_card(), self.draw_card()]
        self.player = [self.draw_card(), self.draw_card()]
        return self.render(), self._info()

    def step(self, action: int):
        if self.actions[int(action)] == "hit":
            self.player.append(self.draw_card())
            terminated = hand_total(self.player)[0] > 21
            reward = -1.0 if terminated else 0.0
        else:
            while hand_total(self.dealer)[0] < 17:
                self.dealer.append(self.draw_card())
            player, dealer = self._score(self.player), self._score(self.dealer)
            terminated, reward = True, float((player > dealer) - (player < dealer))
        info = self._info()
        if terminated:
            info |= {
                "dealer_cards": [card_name(c) for c in self.dealer],
                "dealer_total": hand_total(self.dealer)[0],
                "success": reward > 0,
            }
        return self.render(), reward, terminated, False, info

    @staticmethod
    def _score(cards: list[Card]) -> int:
        total = hand_total(cards)[0]
        return 0 if total > 21 else total

    def state_text(self) -> str:
        return ""

    def oracle_action(self) -> int:
        total, soft = hand_total(self.player)
        up = card_value(self.dealer[0][0])
        return self.actions.index(basic_strategy(total, soft, 11 if up == 1 else up)[0])

    def _info(self) -> dict[str, Any]:
        total, soft = hand_total(self.player)
        return {
            "player_cards": [card_name(c) for c in self.player],
            "dealer_card": card_name(self.dealer[0]),
            "player_total": total,
            "soft": soft,
        }

    # --- rendering ------------------------------------------------------------------------------
    def _layout(self) -> tuple[int, int, float, float]:
        s = self.image_size
        width = int(0.22 * s)
        return width, int(1.4 * width), 0.04 * s, 0.03 * s  # card w, h, margin, gap

    def _table_image(self) -> Image.Image:
        # The dealer's side does not change while the player acts (the hole card stays face down,
        # also on the final frame, as in the reference): draw it once per deal.
        key = (self.dealer[0], self.image_size)
        if key != self._table_key:
            s = self.image_size
            width, height, margin, gap = self._layout()
            img = Image.new("RGB", (s, s), TABLE_GREEN)
            draw, label = ImageDraw.Draw(img), font(int(0.065 * s))
            draw.text((margin, 0.02 * s), "Dealer", fill="white", font=label)
            paste_card(img, self.dealer[0], margin, 0.11 * s, width, height)
            paste_card(img, None, margin + width + gap, 0.11 * s, width, height)
            draw.text((margin, 0.47 * s), "Player", fill="white", font=label)
            self._table_key, self._table = key, img
        return self._table

    def render(self) -> np.ndarray:
        img = self._table_image().copy()
        s = self.image_size
        width, height, margin, gap = self._layout()
        n = len(self.player)
        # one row; past 4 cards they overlap, the corner index (rank + suit) stays visible
        step = min(width + gap, (s - 2 * margin - width) / max(n - 1, 1))
        for i, card in enumerate(self.player):
            paste_card(img, card, margin + i * step, 0.56 * s, width, height)
        return np.array(img)

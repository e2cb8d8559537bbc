"""Playing cards drawn with Pillow: our own faces (rank + a drawn suit shape) and back; no third-party art.

Pillow's built-in font has no suit glyphs, so suits are drawn from circles and polygons. Every card
image is drawn once per (rank, suit, size) at 3x and downsampled (antialiasing), then cached.
"""

from functools import cache, lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

RANKS = ("A", "2", "3", "4", "5", "6", "7", "8", "9", "10", "J", "Q", "K")
SUITS = ("S", "H", "D", "C")  # spades, hearts, diamonds, clubs
Card = tuple[str, str]  # (rank, suit), e.g. ("10", "H")

TABLE_GREEN = (53, 101, 77)
WHITE = (255, 255, 255)
_INK = {"S": (20, 20, 20), "C": (20, 20, 20), "H": (200, 25, 35), "D": (200, 25, 35)}
_SUPERSAMPLE = 3


def card_value(rank: str) -> int:
    """Blackjack/24-points value: A = 1, J/Q/K = 10."""
    if rank == "A":
        return 1
    return 10 if rank in ("J", "Q", "K") else int(rank)


def card_name(card: Card) -> str:
    """Compact JSON-friendly name: rank then suit letter, e.g. "10H", "QS"."""
    return card[0] + card[1]


def random_card(np_random: np.random.Generator) -> Card:
    """A card from an infinite deck (uniform rank, uniform suit)."""
    return RANKS[int(np_random.integers(len(RANKS)))], SUITS[int(np_random.integers(len(SUITS)))]


@cache
def font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's built-in scalable font (needs Pillow >= 10.1 with FreeType)."""
    return ImageFont.load_default(size=max(int(size), 1))


def fit_font(text: str, max_width: float, size: int) -> ImageFont.FreeTypeFont:
    """The largest font <= size in which text fits in max_width pixels."""
    while size > 6 and font(size).getlength(text) > max_width:
        size = int(size * 0.9)
    return font(size)


def draw_suit(draw: ImageDraw.ImageDraw, suit: str, cx: float, cy: float, r: float) -> None:
    """A suit symbol of radius r centred on (cx, cy)."""
    ink = _INK[suit]

    def disc(x: float, y: float, radius: float) -> None:
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=ink)

    if suit == "D":
        draw.polygon([(cx, cy - r), (cx + 0.72 * r, cy), (cx, cy + r), (cx - 0.72 * r, cy)], fill=ink)
    elif suit == "H":
        disc(cx - 0.48 * r, cy - 0.3 * r, 0.5 * r)
        disc(cx + 0.48 * r, cy - 0.3 * r, 0.5 * r)
        draw.polygon([(cx - 0.95 * r, cy - 0.12 * r), (cx + 0.95 * r, cy - 0.12 * r), (cx, cy + r)], fill=ink)
    else:  # spade and club share the stem
        if suit == "S":
            disc(cx - 0.48 * r, cy + 0.15 * r, 0.5 * r)
            disc(cx + 0.48 * r, cy + 0.15 * r, 0.5 * r)
            draw.polygon(
                [(cx - 0.95 * r, cy + 0.33 * r), (cx + 0.95 * r, cy + 0.33 * r), (cx, cy - r)], fill=ink
            )
        else:
            for dx, dy in ((0.0, -0.5), (-0.52, 0.12), (0.52, 0.12)):
                disc(cx + dx * r, cy + dy * r, 0.44 * r)
            disc(cx, cy, 0.3 * r)
        draw.polygon([(cx, cy + 0.1 * r), (cx - 0.32 * r, cy + r), (cx + 0.32 * r, cy + r)], fill=ink)


def _blank(width: int, height: int, fill: tuple[int, int, int]) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    w, h = width * _SUPERSAMPLE, height * _SUPERSAMPLE
    img = Image.new("RGB", (w, h), TABLE_GREEN)
    draw = ImageDraw.Draw(img)
    draw.rounded_rectangle(
        (0, 0, w - 1, h - 1), radius=0.08 * w, fill=fill, outline=(90, 90, 90), width=max(1, int(0.025 * w))
    )
    return img, draw


@lru_cache(maxsize=1024)
def card_face(rank: str, suit: str, width: int, height: int) -> Image.Image:
    """A face-up card: rank and small suit in the top-left corner (visible when cards overlap),
    a large rank and a large suit in the middle."""
    img, draw = _blank(width, height, WHITE)
    w, h, ink = img.width, img.height, _INK[suit]
    corner = font(int(0.16 * h))
    draw.text((0.2 * w, 0.03 * h), rank, fill=ink, font=corner, anchor="mt")
    draw_suit(draw, suit, 0.2 * w, 0.27 * h, 0.065 * h)
    draw.text((0.58 * w, 0.36 * h), rank, fill=ink, font=font(int(0.3 * h)), anchor="mm")
    draw_suit(draw, suit, 0.58 * w, 0.72 * h, 0.15 * h)
    return img.resize((width, height), Image.LANCZOS)


@lru_cache(maxsize=64)
def card_back(width: int, height: int) -> Image.Image:
    """A face-down card: blue with a white frame and a diagonal lattice, unlike any face."""
    img, draw = _blank(width, height, (30, 60, 150))
    w, h = img.width, img.height
    m, step, line = 0.1 * w, max(4, int(0.12 * w)), max(1, int(0.015 * w))
    draw.rectangle((m, m, w - m, h - m), outline=WHITE, width=max(1, int(0.03 * w)))
    inner = Image.new("RGB", (int(w - 2 * m) - 2 * line, int(h - 2 * m) - 2 * line), (30, 60, 150))
    lattice = ImageDraw.Draw(inner)
    for k in range(-inner.height, inner.width + inner.height, step):
        lattice.line((k, 0, k + inner.height, inner.height), fill=(110, 150, 230), width=line)
        lattice.line((k, inner.height, k + inner.height, 0), fill=(110, 150, 230), width=line)
    img.paste(inner, (int(m) + line + 1, int(m) + line + 1))
    return img.resize((width, height), Image.LANCZOS)


def paste_card(canvas: Image.Image, card: Card | None, x: float, y: float, width: int, height: int) -> None:
    """Paste a face-up card, or the back when card is None, with its top-left corner at (x, y)."""
    img = card_back(width, height) if card is None else card_face(card[0], card[1], width, height)
    canvas.paste(img, (int(x), int(y)))

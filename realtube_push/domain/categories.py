"""The closed set of AI-content categories a vote can name, and the query-string parser.

Promises: ``CATEGORIES`` lists every valid category value in a fixed display order, and
``parse_categories`` accepts nothing outside it.
"""

import enum
from typing import Final


class Category(enum.StrEnum):
    """A kind of AI involvement a voter can report."""

    FULLY_AI = "fully_ai"
    AI_VOICEOVER = "ai_voiceover"
    AI_VISUALS = "ai_visuals"
    AI_THUMBNAILS = "ai_thumbnails"
    AI_ASSISTED = "ai_assisted"


CATEGORIES: Final[tuple[str, ...]] = tuple(category.value for category in Category)


def parse_categories(csv: str) -> frozenset[str]:
    """Parse a ``?categories=a,b`` value into a set of category names.

    Items are split on commas and stripped; empty items are ignored, so ``""`` gives an
    empty set (the caller decides that means "no filter"). Matching is exact and
    case-sensitive, as in the API. Raises ``ValueError`` naming the first unknown item.
    """
    parsed: set[str] = set()
    for raw in csv.split(","):
        item = raw.strip()
        if not item:
            continue
        if item not in CATEGORIES:
            raise ValueError(f"unknown category {item!r}; expected one of: {', '.join(CATEGORIES)}")
        parsed.add(item)
    return frozenset(parsed)

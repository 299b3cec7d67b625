"""Annotation guidelines: what each grade means, with an example, shown beside the grade buttons.

The text is Markdown. ``load_guidelines(path)`` reads a team's own file (``$UNINOTE_GUIDELINES``
in the app) or returns ``DEFAULT_GUIDELINES``, written for a product catalogue.
"""

from __future__ import annotations

from pathlib import Path

from uninote.errors import ConfigError

DEFAULT_GUIDELINES = """\
**How relevant is the candidate as a neighbour of the query?** Judge the item, not the photo.

- **0 · irrelevant**: another kind of thing; a shopper looking at the query would not want it.
  *A red running shoe for a blue denim jacket.*
- **1 · related**: same broad category or use, but a different kind, or the same kind for
  another audience. *A denim skirt, or a child's jacket, for a women's denim jacket.*
- **2 · relevant**: the same kind of item, a good alternative; colour, brand or detail differ.
  *A black leather jacket for a brown leather jacket.*
- **3 · near-duplicate / ideal**: the same product or one a shopper could not tell apart (another
  photo, another size, the same model in a very close colour). *The same white sneaker shot from the side.*

Unsure between two grades? Take the lower one and say why in the comment.
"""


def load_guidelines(path: str | Path | None = None) -> str:
    """The guidelines in ``path`` (Markdown), or the default text when ``path`` is empty."""
    if not path:
        return DEFAULT_GUIDELINES
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"guidelines file {p}: no such file (set UNINOTE_GUIDELINES to a Markdown file)")
    text = p.read_text(encoding="utf-8").strip()
    if not text:
        raise ConfigError(f"guidelines file {p} is empty: write what each grade 0-3 means")
    return text

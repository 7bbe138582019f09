"""HTML -> the plain text a reader sees: no tags, no markup, entities decoded."""

from __future__ import annotations

from inscriptis import get_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig

# "relaxed" keeps inline elements (<b>, <a>, <span>) apart by spaces, as browsers show them.
_CONFIG = ParserConfig(css=CSS_PROFILES["relaxed"], display_links=False, display_images=False)


def html_to_text(html: str) -> str:
    """Render HTML as plain text laid out roughly as a mail client shows it."""
    if not html.strip():
        return ""
    try:
        return str(get_text(html, _CONFIG))
    except Exception:  # lxml rejects some documents (empty after cleaning, odd encodings)
        return ""

"""HTML -> the plain text a reader sees: no tags, no markup, entities decoded.

The text must cost about what the HTML does. Laid out as a browser would, a small
document can grow without bound, so three kinds of layout are left out:
- table layout pads every row to the widest cell (87 KB of HTML became 90 MB of text):
  rows are lines, cells are separated by spaces;
- indentation (`<div>`, lists) repeats per nesting level on every line: none;
- inline styles (`padding-left: 100000em`) are removed before rendering.
"""

from __future__ import annotations

import re
from typing import Any

from inscriptis import get_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.html_properties import Display
from inscriptis.model.config import ParserConfig
from inscriptis.model.html_element import HtmlElement
from inscriptis.model.tag import CustomHtmlTagHandlerMapping

_TABLE_TAGS = ("table", "tr", "td", "th", "tbody", "thead", "tfoot", "caption")
# Each `style="` ends at the next quote, so the scan is linear even when one is unclosed.
_STYLE = re.compile(r"""\sstyle\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>]*)""", re.IGNORECASE)


def _no_layout(*_: Any) -> None:
    """A table tag handler that lays nothing out."""


def _profile() -> dict[str, HtmlElement]:
    # "relaxed" keeps inline elements (<b>, <a>, <span>) apart by spaces, as browsers do.
    css = dict(CSS_PROFILES["relaxed"])
    for tag in ("div", "ul", "ol"):
        css[tag] = HtmlElement(display=Display.block)
    for tag in ("table", "tr", "thead", "tbody", "tfoot", "caption"):
        css[tag] = HtmlElement(display=Display.block)
    for tag in ("td", "th"):
        css[tag] = HtmlElement(display=Display.inline, suffix=" ")
    return css


_CONFIG = ParserConfig(
    css=_profile(), display_links=False, display_images=False,
    custom_html_tag_handler_mapping=CustomHtmlTagHandlerMapping(
        start_tag_mapping={tag: _no_layout for tag in _TABLE_TAGS},
        end_tag_mapping={tag: _no_layout for tag in _TABLE_TAGS}))


def html_to_text(html: str) -> str:
    """Render HTML as plain text, roughly as a mail client shows it, in linear size."""
    if not html.strip():
        return ""
    try:
        return str(get_text(_STYLE.sub("", html), _CONFIG))
    except Exception:  # lxml rejects some documents (empty after cleaning, odd encodings)
        return ""

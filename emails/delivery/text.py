"""Plain-text alternative derived from an email's (already sanitised) HTML body.

A small converter rather than html2text, which is GPL. It keeps what a reader needs: paragraphs
and line breaks, list items, table rows, and links as ``text (url)``. The worker runs it for every
email, so it splits the HTML with one regular expression rather than ``html.parser``, which took
four times as long on a 5 KB body (a quarter of the worker's time per email); the body has been
through nh3, so its tags are well formed, but anything else still converts sensibly.
"""

from __future__ import annotations

import re
from html import unescape

# Tags that start and end a block: they become line breaks around their text.
BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "caption", "dd", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5",
        "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table",
        "tbody", "tfoot", "thead", "tr", "ul",
    }
)  # fmt: skip
PARAGRAPH_TAGS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote"})
# Their content is never text a reader should see.
SKIPPED_TAGS = frozenset({"script", "style", "head", "title", "template"})
CELL_TAGS = frozenset({"td", "th"})

# Markers kept out of the text until the end, so that whitespace collapsing cannot eat them. A
# <br> is one line break each; block edges next to each other make one line break, or a blank
# line when one of them is a paragraph.
_BREAK = "\x00"
_BLOCK = "\x01"
_PARAGRAPH = "\x02"
_PRE_SPACE = "\x03"
_MARKERS = _BREAK + _BLOCK + _PARAGRAPH
_NO_MARKERS = dict.fromkeys(map(ord, _MARKERS + _PRE_SPACE))

# One token: a comment, a declaration or processing instruction, a tag (its attributes may quote
# a ">"), a run of text, or a "<" that starts none of these (text too).
_TOKEN = re.compile(
    r"<!--.*?(?:-->|\Z)"
    r"|<[!?][^>]*>?"
    r"|<(/?)([a-zA-Z][^\s/>]*)((?:[^>\"']++|\"[^\"]*+\"|'[^']*+')*+)>"
    r"|[^<]+"
    r"|<",
    re.DOTALL,
)
_ATTRIBUTE = re.compile(r"""([^\s=/>]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?""")
# The content of these is raw text up to their end tag, as browsers read it.
_RAW_TEXT_END = {tag: re.compile(rf"</{tag}\s*>", re.IGNORECASE) for tag in ("script", "style")}


def _attributes(text: str) -> dict[str, str]:
    """The attributes of a start tag's ``text``, by lower-case name; read only for the few tags
    whose attributes the text shows."""
    return {
        name.lower(): unescape(quoted or single or bare)
        for name, quoted, single, bare in _ATTRIBUTE.findall(text)
        if name != "/"
    }


class _TextExtractor:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.skipping = 0
        self.pre = 0
        self.links: list[tuple[str, int]] = []  # (href, index in parts where its text starts)
        self.lists: list[list[int | None]] = []  # per open list: [next number] or [None] for ul
        self.row_has_cell = False
        self.has_markers = False

    def feed(self, html: str) -> None:
        # The body's own control characters must not pass for our markers. Few bodies have
        # any (``html.unescape`` never makes one), so the text is only cleaned when it does.
        self.has_markers = any(character in html for character in _MARKERS + _PRE_SPACE)
        position: int | None = 0
        while position is not None:
            position = self._feed_from(html, position)

    def _feed_from(self, html: str, start: int) -> int | None:
        """Handle the tokens of ``html`` from ``start`` on, up to the end of a raw-text element
        (its content is not HTML): where to go on from, or None at the end."""
        for token in _TOKEN.finditer(html, start):
            closing, name, attributes = token.groups()
            if name is None:
                text = token[0]
                if text[0] != "<" or text == "<":
                    self.handle_data(unescape(text))
                continue  # a comment or a declaration
            tag = name.lower()
            if closing:
                self.handle_endtag(tag)
            elif attributes and attributes.rstrip().endswith("/"):
                self.handle_startendtag(tag, attributes)
            else:
                self.handle_starttag(tag, attributes)
                if tag in _RAW_TEXT_END:
                    end = _RAW_TEXT_END[tag].search(html, token.end())
                    self.handle_endtag(tag)
                    return end.end() if end else None
        return None

    def handle_starttag(self, tag: str, attributes: str) -> None:
        if tag in SKIPPED_TAGS:
            self.skipping += 1
            return
        if tag == "br":
            self.parts.append(_BREAK)
        elif tag in ("ul", "ol"):
            start = _attributes(attributes).get("start") or "1"
            number = int(start) if tag == "ol" and start.isdigit() else None
            self.lists.append([number])
            self.parts.append(_BLOCK)
        elif tag == "li":
            self.parts.append(_BLOCK)
            self.parts.append(self._bullet())
        elif tag in BLOCK_TAGS:
            self.parts.append(_PARAGRAPH if tag in PARAGRAPH_TAGS else _BLOCK)
            if tag == "tr":
                self.row_has_cell = False
            if tag == "pre":
                self.pre += 1
        elif tag in CELL_TAGS:
            if self.row_has_cell:
                self.parts.append(" ")
            self.row_has_cell = True
        elif tag == "a":
            self.links.append((_attributes(attributes).get("href") or "", len(self.parts)))
        elif tag == "img":
            alt = (_attributes(attributes).get("alt") or "").strip()
            if alt:
                self.parts.append(alt)

    def handle_startendtag(self, tag: str, attributes: str) -> None:
        self.handle_starttag(tag, attributes)
        if tag not in ("br", "img"):
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIPPED_TAGS:
            self.skipping = max(0, self.skipping - 1)
            return
        if tag in ("ul", "ol"):
            if self.lists:
                self.lists.pop()
            self.parts.append(_BLOCK)
        elif tag in BLOCK_TAGS:
            self.parts.append(_PARAGRAPH if tag in PARAGRAPH_TAGS else _BLOCK)
            if tag == "pre":
                self.pre = max(0, self.pre - 1)
        elif tag == "a" and self.links:
            href, start = self.links.pop()
            self._append_link_target(href, "".join(self.parts[start:]))

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        if self.has_markers:
            data = data.translate(_NO_MARKERS)
        if self.pre:
            # Preformatted text keeps its spaces and line breaks: markers survive the collapse.
            data = data.replace("\r\n", "\n").replace("\n", _BREAK)
            data = data.replace(" ", _PRE_SPACE).replace("\t", _PRE_SPACE * 4)
        self.parts.append(data)

    def _bullet(self) -> str:
        if not self.lists:
            return "- "
        current = self.lists[-1]
        if current[0] is None:
            return "- "
        number = current[0]
        current[0] = number + 1
        return f"{number}. "

    def _append_link_target(self, href: str, text: str) -> None:
        href = href.strip()
        shown = " ".join(text.split())
        # Inline images and in-page anchors have no address a reader could use.
        if not href or href.startswith(("cid:", "#")):
            return
        target = href.removeprefix("mailto:") if href.startswith("mailto:") else href
        if shown in (href, target):
            return
        self.parts.append(f" ({target})" if shown else target)


# The clean-up passes of ``html_to_text``, written for speed (each is the most of a 5 KB body's
# conversion): a run of whitespace that is not already one space; a run of block edges.
_WHITESPACE = re.compile(r"[\t\r\n\f\v][ \t\r\n\f\v]*| [ \t\r\n\f\v]+")
_EDGES = re.compile(f"[{_BLOCK}{_PARAGRAPH}]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def _line_breaks(edges: re.Match[str]) -> str:
    # Block edges next to each other make one line break, or a blank line if one of them is a
    # paragraph's.
    return "\n\n" if _PARAGRAPH in edges[0] else "\n"


def html_to_text(html: str) -> str:
    """Render ``html`` as readable plain text (UTF-8, ``\\n`` line ends, no trailing space)."""
    parser = _TextExtractor()
    parser.feed(html)
    text = "".join(parser.parts)
    # Source whitespace is insignificant in HTML: collapse it, drop the spaces next to the
    # markers, then turn the markers into line breaks.
    text = _WHITESPACE.sub(" ", text)
    for marker in _MARKERS:
        text = text.replace(f" {marker}", marker).replace(f"{marker} ", marker)
    text = _EDGES.sub(_line_breaks, text)
    text = text.replace(_BREAK, "\n").replace(_PRE_SPACE, " ")
    if "\n\n\n" in text:
        text = _BLANK_LINES.sub("\n\n", text)
    return "\n".join(line.rstrip() for line in text.strip("\n ").split("\n"))

"""Turn a record's raw text (markdown, rst, html, json, jsonl, csv, code) into markdown-ish text plus a title."""

from __future__ import annotations

import csv
import io
import json
import re
import textwrap
from pathlib import PurePosixPath
from typing import Any

_EXTENSIONS = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdx": "markdown",
    ".txt": "text",
    ".rst": "rst",
    ".html": "html",
    ".htm": "html",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
}
_LANGUAGES = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".jsx": "jsx",
    ".ts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".kt": "kotlin",
    ".c": "c",
    ".h": "c",
    ".cpp": "cpp",
    ".cc": "cpp",
    ".hpp": "cpp",
    ".cs": "csharp",
    ".rb": "ruby",
    ".php": "php",
    ".swift": "swift",
    ".sh": "bash",
    ".bash": "bash",
    ".sql": "sql",
    ".toml": "toml",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".css": "css",
}
# Characters docutils accepts as section adornment.
_ADORNMENT = "=-~^\"'`:.#*+_<>!$%&,/;?@\\|"
_ATX = re.compile(r"^#\s+(.+?)(?:\s+#+)?\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_CODE_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+(?:code-block|code|sourcecode)::\s*(\S*)\s*$")


def format_for_path(path: str) -> str:
    """The format name for a file path, from its extension; unknown extensions are plain text."""
    suffix = PurePosixPath(path).suffix.lower()
    if suffix in _LANGUAGES:
        return f"code:{_LANGUAGES[suffix]}"
    return _EXTENSIONS.get(suffix, "text")


def to_text(raw: str, fmt: str) -> tuple[str, str | None]:
    """Normalize ``raw`` written in ``fmt`` to markdown-ish text.

    Args:
        raw: the decoded text of a record.
        fmt: a format name from :func:`format_for_path` (``"code:python"`` carries the language).

    Returns:
        The normalized text and the title found in it, or None.

    Raises:
        ValueError: the text is not valid in its format, or the format is unknown.
    """
    kind, _, lang = fmt.partition(":")
    if kind == "markdown":
        return raw, _markdown_title(raw)
    if kind == "text":
        return raw, None
    if kind == "code":
        return _fenced(raw, lang), None
    if kind == "rst":
        return _rst(raw)
    if kind == "html":
        return _html(raw)
    if kind == "json":
        return _fenced(_pretty(_load(raw, "malformed JSON")), "json"), None
    if kind == "jsonl":
        return _jsonl(raw), None
    if kind == "csv":
        return _csv(raw), None
    raise ValueError(f"unknown format {fmt!r}")


def _markdown_title(text: str) -> str | None:
    in_fence = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence  # a '# comment' inside a code block is not a heading
        elif not in_fence and (match := _ATX.match(line)):
            return match.group(1)
    return None


def _fenced(body: str, lang: str = "") -> str:
    # The fence must be longer than any backtick run inside, or the block would end early.
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{body.rstrip(chr(10))}\n{fence}"


def _load(raw: str, what: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what}: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _jsonl(raw: str) -> str:
    records = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(_pretty(json.loads(line)))
        except json.JSONDecodeError as exc:
            raise ValueError(f"malformed JSON on line {number}: {exc.msg} at column {exc.colno}") from None
    return "\n\n".join(records)


def _csv(raw: str) -> str:
    reader = csv.reader(io.StringIO(raw, newline=""))
    try:
        header = next(reader, [])
        names = [name.strip() or f"column {i + 1}" for i, name in enumerate(header)]
        paragraphs = []
        for row in reader:
            # Empty cells are left out: "notes: " lines only add noise to search and context.
            lines = [
                f"{names[i] if i < len(names) else f'column {i + 1}'}: {value.strip()}"
                for i, value in enumerate(row)
                if value.strip()
            ]
            if lines:
                paragraphs.append("\n".join(lines))
    except csv.Error as exc:
        raise ValueError(f"malformed CSV on line {reader.line_num}: {exc}") from None
    return "\n\n".join(paragraphs)


def _html(raw: str) -> tuple[str, str | None]:
    from bs4 import BeautifulSoup
    from markdownify import ATX, MarkdownConverter

    soup = BeautifulSoup(raw, "html.parser")
    title = None
    if soup.title and soup.title.get_text(strip=True):
        title = soup.title.get_text(" ", strip=True)
    elif (h1 := soup.find("h1")) and h1.get_text(strip=True):
        title = h1.get_text(" ", strip=True)
    # <head> would otherwise leak the <title> text into the body.
    for tag in soup(["head", "script", "style", "noscript", "template"]):
        tag.decompose()
    text = MarkdownConverter(heading_style=ATX).convert_soup(soup)
    return re.sub(r"\n{3,}", "\n\n", text).strip(), title


def _is_adornment(line: str) -> bool:
    stripped = line.rstrip()
    return len(stripped) >= 2 and stripped[0] in _ADORNMENT and stripped == stripped[0] * len(stripped)


def _rst(raw: str) -> tuple[str, str | None]:
    lines = raw.splitlines()
    styles: list[tuple[str, bool]] = []  # (char, overlined) in order of first use: that order is the level
    out: list[str] = []
    title: str | None = None
    i = 0

    def heading(text: str, style: tuple[str, bool]) -> None:
        nonlocal title
        if style not in styles:
            styles.append(style)
        out.append("#" * min(styles.index(style) + 1, 6) + " " + text)
        title = title or text

    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        after = lines[i + 2] if i + 2 < len(lines) else ""
        prev_blank = not out or not out[-1].strip()
        if (
            _is_adornment(line)
            and nxt.strip()
            and not _is_adornment(nxt)
            and after.rstrip() == line.rstrip()
            and len(line.rstrip()) >= len(nxt.strip())
        ):
            heading(nxt.strip(), (line[0], True))
            i += 3
            continue
        if (
            prev_blank
            and line.strip()
            and not line[0].isspace()
            and not _is_adornment(line)
            and _is_adornment(nxt)
            and len(nxt.rstrip()) >= len(line.rstrip())
        ):
            heading(line.strip(), (nxt[0], False))
            i += 2
            continue
        if match := _CODE_DIRECTIVE.match(line):
            block, i = _indented_block(lines, i + 1, len(match.group(1)), skip_options=True)
            out.append(_fenced(block, match.group(2)) if block else line)
            continue
        if line.rstrip().endswith("::") and not line.lstrip().startswith(".."):
            block, end = _indented_block(lines, i + 1, len(line) - len(line.lstrip()))
            if block:
                # "Example::" reads "Example:"; a bare "::" or "text ::" leaves no colon.
                text = line.rstrip()
                text = text[:-2].rstrip() if text.strip() == "::" or text.endswith(" ::") else text[:-1]
                if text.strip():
                    out.extend([text, ""])
                out.append(_fenced(block))
                i = end
                continue
        out.append(line)
        i += 1
    return "\n".join(out), title


def _indented_block(lines: list[str], start: int, indent: int, skip_options: bool = False) -> tuple[str, int]:
    """The literal block that starts at ``start``: lines indented deeper than ``indent``."""
    i = start
    if skip_options:
        while i < len(lines) and lines[i].strip().startswith(":") and _indent(lines[i]) > indent:
            i += 1  # directive options such as ":linenos:"
    while i < len(lines) and not lines[i].strip():
        i += 1
    first = i
    while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > indent):
        i += 1
    while i > first and not lines[i - 1].strip():
        i -= 1  # trailing blank lines belong to the text after the block
    if i == first:
        return "", start
    return textwrap.dedent("\n".join(lines[first:i])), i


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())

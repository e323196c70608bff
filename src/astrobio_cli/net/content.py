"""Is this what we asked for? Content checks that quote the server, and a typed table parser.

- :func:`check_body` rejects an HTML page or a TAP/VOTable error document delivered with
  status 200 (archives do this), quoting what the server said.
- :func:`parse_delimited` turns CSV/TSV text into a :class:`Table` of typed columns (int, float
  with NaN for blanks, string), checks the header against the requested columns and names the
  line of any row that does not parse. A header with no rows is a valid empty table.

Pure Python, no third-party imports: cheap to import and easy to test.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from astrobio_cli.net.errors import ContentError

Kind = Literal["int", "float", "string"]

_HTML_START = re.compile(
    rb"^\s*(<!--.*?-->\s*)*<(!doctype\s+html|html[\s>]|head[\s>]|body[\s>])", re.I | re.S
)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)
_H1 = re.compile(r"<h[12][^>]*>(.*?)</h[12]>", re.I | re.S)
_TAG = re.compile(r"<[^>]+>")
_INFO_ERROR = re.compile(
    r"<INFO\b(?=[^>]*\bname\s*=\s*[\"']QUERY_STATUS[\"'])(?=[^>]*\bvalue\s*=\s*[\"']ERROR[\"'])"
    r"[^>]*?(?:/>|>(.*?)</INFO>)",
    re.I | re.S,
)
_UWS_ERROR = re.compile(r"<(?:\w+:)?message[^>]*>(.*?)</(?:\w+:)?message>", re.I | re.S)


def _squash(text: str, limit: int = 300) -> str:
    text = " ".join(html.unescape(_TAG.sub(" ", text)).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_html(head: bytes) -> bool:
    return bool(_HTML_START.match(head[:4096]))


def tap_error(text: str) -> str | None:
    """The message of a TAP/VOTable error document (`INFO name=QUERY_STATUS value=ERROR`)."""
    m = _INFO_ERROR.search(text)
    if m is None:
        return None
    msg = _squash(m.group(1) or "")
    if not msg:  # the message may sit in the tag itself
        msg = _squash(m.group(0).replace("<", " ").replace(">", " "))
    return msg or "(no message)"


def describe_error_body(body: bytes, content_type: str = "") -> str:
    """A one-line quote of what a server said in an error body (HTML title, TAP message...)."""
    if not body:
        return ""
    text = body[:65536].decode("utf-8", "replace")
    if msg := tap_error(text):
        return msg
    if is_html(body):
        title = _TITLE.search(text) or _H1.search(text)
        return _squash(title.group(1) if title else text, 200)
    if m := _UWS_ERROR.search(text):
        return _squash(m.group(1))
    return _squash(text, 200)


def check_body(head: bytes, *, what: str = "the server", content_type: str = "") -> None:
    """Raise ContentError if `head` (the first bytes of a body) is an HTML page or a TAP error."""
    text = head[:65536].decode("utf-8", "replace")
    if msg := tap_error(text):
        raise ContentError(f"{what} reported an error: {msg}")
    # Sniff the body, not the label: some services send CSV as text/html, and that is data.
    if is_html(head) or ("text/html" in content_type.lower() and head.lstrip()[:1] == b"<"):
        said = describe_error_body(head)
        raise ContentError(
            f"{what} sent an HTML page instead of data ({said!r}); the service may be down "
            "or the URL wrong (check base_url in `astrobio config show`)"
        )


# -- typed tables ------------------------------------------------------------------------------


@dataclass
class Column:
    name: str
    kind: Kind
    values: list[Any]
    unit: str = ""
    description: str = ""


@dataclass
class Table:
    columns: list[Column] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def num_rows(self) -> int:
        return len(self.columns[0].values) if self.columns else 0

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(nan|inf|infinity)$", re.I)


def _split_csv_line(line: str, delim: str, lineno: int) -> list[tuple[str, bool]]:
    """Fields of one CSV line as (text, was_quoted); `""` inside quotes is one quote."""
    out: list[tuple[str, bool]] = []
    i, n = 0, len(line)
    while True:
        if i < n and line[i] == '"':
            j, buf = i + 1, []
            while True:
                k = line.find('"', j)
                if k < 0:
                    raise ContentError(f"line {lineno}: unterminated quoted field: {line[:120]!r}")
                buf.append(line[j:k])
                if k + 1 < n and line[k + 1] == '"':
                    buf.append('"')
                    j = k + 2
                    continue
                i = k + 1
                break
            out.append(("".join(buf), True))
            if i < n and line[i] != delim:
                raise ContentError(
                    f"line {lineno}: text after a closing quote at column {i + 1}: {line[:120]!r}"
                )
        else:
            k = line.find(delim, i)
            end = n if k < 0 else k
            out.append((line[i:end], False))
            i = end
        if i >= n:
            return out
        i += 1  # the delimiter
        if i == n:
            out.append(("", False))
            return out


def _split_tsv_line(line: str, _delim: str, _lineno: int) -> list[tuple[str, bool]]:
    return [(f, False) for f in line.split("\t")]


def _convert(tok: str, kind: Kind) -> Any:
    if kind == "string":
        return tok if tok != "" else None
    s = tok.strip()
    if s == "":
        return math.nan if kind == "float" else None
    if kind == "int":
        if not _INT.match(s):
            raise ValueError
        return int(s)
    if not _FLOAT.match(s):
        raise ValueError
    return float(s)


def _infer(cells: list[tuple[str, bool]]) -> Kind:
    filled = [(t.strip(), q) for t, q in cells if t.strip() != ""]
    if not filled or any(q for _, q in filled):
        return "string"
    if all(_INT.match(t) and len(t.lstrip("+-")) <= 18 for t, _ in filled):  # fits int64
        return "int"
    if all(_FLOAT.match(t) for t, _ in filled):
        return "float"
    return "string"


def parse_delimited(
    text: str,
    *,
    delimiter: str = ",",
    expected_columns: list[str] | None = None,
    kinds: dict[str, Kind] | None = None,
    what: str = "the response",
) -> Table:
    """Parse CSV (quoted strings, unquoted numbers) or TSV (`delimiter="\\t"`) into typed columns.

    expected_columns: the header must name exactly these (case-insensitive), else ContentError.
    kinds: forced kinds for known columns; other columns are inferred (a quoted value makes a
        string column; otherwise all-integer -> int, all-numeric -> float, else string).
    Lines starting with `#` before the header are comments (archive web downloads have them).
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    check_body(text[:65536].encode(), what=what)
    lines = text.splitlines()
    splitter = _split_tsv_line if delimiter == "\t" else _split_csv_line
    idx = 0
    while idx < len(lines) and (lines[idx].startswith("#") or not lines[idx].strip()):
        idx += 1
    if idx >= len(lines):
        raise ContentError(f"{what} is empty: not even a header line")
    header = [t.strip() for t, _ in splitter(lines[idx], delimiter, idx + 1)]
    if expected_columns is not None and [h.lower() for h in header] != [
        c.lower() for c in expected_columns
    ]:
        raise ContentError(
            f"{what} has columns {','.join(header)!r} on line {idx + 1}, "
            f"but {','.join(expected_columns)!r} were requested"
        )
    if len(set(header)) != len(header):
        raise ContentError(f"{what}: duplicate column names in the header: {lines[idx][:200]!r}")
    ncol = len(header)
    cells: list[list[tuple[str, bool]]] = [[] for _ in header]
    linenos: list[int] = []
    for i in range(idx + 1, len(lines)):
        line = lines[i]
        if not line.strip():
            continue
        fields = splitter(line, delimiter, i + 1)
        if len(fields) != ncol:
            raise ContentError(
                f"{what}: line {i + 1} has {len(fields)} fields but the header has {ncol}: "
                f"{line[:120]!r}"
            )
        linenos.append(i + 1)
        for col, f in zip(cells, fields, strict=True):
            col.append(f)
    kinds = {k.lower(): v for k, v in (kinds or {}).items()}
    table = Table()
    for name, col in zip(header, cells, strict=True):
        kind: Kind = kinds.get(name.lower()) or _infer(col)
        values = []
        for (tok, _q), lineno in zip(col, linenos, strict=True):
            try:
                values.append(_convert(tok, kind))
            except ValueError:
                raise ContentError(
                    f"{what}: line {lineno}: column {name!r} value {tok!r} is not "
                    f"{'an integer' if kind == 'int' else 'a number'}"
                ) from None
        table.columns.append(Column(name, kind, values))
    return table

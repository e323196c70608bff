"""Is this what we asked for? Content checks that quote the server, and a typed table parser.

- :func:`check_body` rejects an HTML page or a TAP/VOTable error document delivered with
  status 200 (archives do this), quoting what the server said.
- :func:`parse_delimited` turns CSV/TSV text into a :class:`Table` of typed columns (int, float
  with NaN for blanks, string), checks the header against the requested columns and names the
  line of any row that does not parse. A header with no rows is a valid empty table.

Small bodies are parsed in pure Python (no third-party imports: cheap to import). A body of
`ARROW_MIN_BYTES` or more is parsed by pyarrow's CSV reader into typed Arrow columns with the
same rules (kinds, blanks, quoting, header check), so memory stays a small multiple of the output
table instead of a Python object per cell; :func:`parse_delimited_file` streams a file from disk
the same way. Anything the fast path is unsure of (a quoted delimiter, a bad row, an unusual
line break) is parsed again by the pure-Python parser, which names the line.
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

    def __len__(self) -> int:
        return len(self.values)


class ArrowColumn(Column):
    """A column whose values live in an Arrow (chunked) array: float blanks are NaN, int and
    string blanks null. `values` converts to Python lists only when asked."""

    def __init__(self, name: str, kind: Kind, array: Any, unit: str = "", description: str = ""):
        self.name, self.kind, self.array = name, kind, array
        self.unit, self.description = unit, description
        self._values: list[Any] | None = None

    @property  # type: ignore[override]
    def values(self) -> list[Any]:
        if self._values is None:
            self._values = self.array.to_pylist()
        return self._values

    @values.setter
    def values(self, values: list[Any]) -> None:
        self._values, self.array = values, None

    def __len__(self) -> int:
        return len(self.array) if self.array is not None else len(self.values)


@dataclass
class Table:
    columns: list[Column] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def num_rows(self) -> int:
        return len(self.columns[0]) if self.columns else 0

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
    if len(text) >= ARROW_MIN_BYTES and not _ODD_BREAKS.search(text):
        found = _find_header(text)
        if found is not None:
            header_line, start = found
            skip = len(text[:start].encode("utf-8"))  # one copy of the body, not two

            table = _parse_arrow(
                lambda: _buffer_reader(text.encode("utf-8"), skip),
                header_line,
                delimiter=delimiter,
                expected_columns=expected_columns,
                kinds=kinds,
                what=what,
            )
            if table is not None:
                return table
    return _parse_python(text, delimiter, expected_columns, kinds, what)


def _parse_python(
    text: str,
    delimiter: str,
    expected_columns: list[str] | None,
    kinds: dict[str, Kind] | None,
    what: str,
) -> Table:
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


# -- the Arrow fast path -----------------------------------------------------------------------

ARROW_MIN_BYTES = 1 << 20  # smaller bodies: pure Python (no pyarrow import, same answer)
# line breaks of str.splitlines() that the CSV reader does not split on: leave those to Python
_ODD_BREAKS = re.compile("[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_ODD_BREAK_BYTES = re.compile(rb"[\x0b\x0c\x1c\x1d\x1e]|\xc2\x85|\xe2\x80[\xa8\xa9]")
_LINE_END = re.compile(r"\r\n|\r|\n")
_QUOTED = r'^"(?:[^"]|"")*"$'


class _Unsure(Exception):
    """The fast path cannot be sure it gives the pure-Python parser's answer."""


def _find_header(text: str) -> tuple[str, int] | None:
    """(header line, offset of the line after it), skipping `#` comments and blank lines."""
    pos = 0
    while pos < len(text):
        m = _LINE_END.search(text, pos)
        end, nxt = (m.start(), m.end()) if m else (len(text), len(text))
        line = text[pos:end]
        if not (line.startswith("#") or not line.strip()):
            return line, nxt
        pos = nxt
    return None


def _buffer_reader(data: bytes, skip: int = 0):
    import pyarrow as pa

    return pa.BufferReader(pa.py_buffer(data).slice(skip))


def _header_names(header_line: str, delimiter: str, expected, what: str) -> list[str]:
    splitter = _split_tsv_line if delimiter == "\t" else _split_csv_line
    header = [t.strip() for t, _ in splitter(header_line, delimiter, 0)]
    if expected is not None and [h.lower() for h in header] != [c.lower() for c in expected]:
        raise _Unsure  # the Python parser words it, with the line number
    if len(set(header)) != len(header):
        raise _Unsure
    return header


def _parse_arrow(open_stream, header_line: str, *, delimiter, expected_columns, kinds, what):
    """The table from the body after the header line (`open_stream()` gives a fresh pyarrow
    input stream), or None when the pure-Python parser must decide."""
    try:
        header = _header_names(header_line, delimiter, expected_columns, what)
        raw = _read_strings(open_stream, len(header), delimiter)
        cols = [raw.column(i) for i in range(raw.num_columns)]
        del raw
        kinds = {k.lower(): v for k, v in (kinds or {}).items()}
        table = Table()
        for i, name in enumerate(header):
            col, cols[i] = cols[i], None  # each column's text is freed once it is typed
            table.columns.append(_typed_column(name, col, kinds.get(name.lower()), delimiter))
            del col
        return table
    except _Unsure:
        return None


def _read_strings(open_stream, ncol: int, delimiter: str):
    """Every field as its exact text (quotes kept), one string column per header field."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    names = [f"c{i}" for i in range(ncol)]
    try:
        with open_stream() as stream:
            table = pacsv.read_csv(
                stream,
                read_options=pacsv.ReadOptions(column_names=names, block_size=4 << 20),
                parse_options=pacsv.ParseOptions(
                    delimiter=delimiter,
                    quote_char=False,
                    double_quote=False,
                    escape_char=False,
                    newlines_in_values=False,
                    ignore_empty_lines=True,
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={n: pa.string() for n in names},
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                    check_utf8=True,
                ),
            )
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError):
        raise _Unsure from None  # a row with another field count, bad UTF-8, an empty body
    if table.num_rows and (ncol == 1 or delimiter == "\t"):
        # Python skips whitespace-only lines (a tab is whitespace too); so must we
        import pyarrow.compute as pc

        blank = None
        for i in range(ncol):
            col = table.column(i)
            empty = pc.equal(pc.utf8_trim_whitespace(col), "")
            blank = empty if blank is None else pc.and_(blank, empty)
        if ncol == 1 and delimiter != "\t":
            blank = pc.and_(blank, pc.not_equal(table.column(0), ""))
        if pc.any(blank).as_py():
            table = table.filter(pc.invert(blank))
    return table


def _typed_column(name: str, col, forced: Kind | None, delimiter: str) -> ArrowColumn:
    import pyarrow as pa
    import pyarrow.compute as pc

    quoted = None
    if delimiter != "\t" and len(col) and pc.any(pc.starts_with(col, '"')).as_py():
        quoted = pc.starts_with(col, '"')
        well_formed = pc.match_substring_regex(col, _QUOTED)
        if pc.any(pc.and_(quoted, pc.invert(well_formed))).as_py():
            raise _Unsure  # an unterminated quote, text after a closing quote...
        inner = pc.replace_substring(pc.utf8_slice_codeunits(col, 1, -1), '""', '"')
        col = pc.if_else(quoted, inner, col)
    stripped = pc.utf8_trim_whitespace(col)
    filled = pc.not_equal(stripped, "")
    kind: Kind
    if forced is not None:
        kind = forced
    elif quoted is not None and pc.any(pc.and_(quoted, filled)).as_py():
        kind = "string"
    else:
        kind = _infer_arrow(stripped, filled)
    if kind == "string":
        return ArrowColumn(
            name, kind, pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)
        )
    if quoted is not None and pc.any(quoted).as_py():
        raise _Unsure  # a quoted number: the Python parser decides what it means
    pattern = _INT.pattern if kind == "int" else _FLOAT.pattern
    flags = "" if kind == "int" else "(?i)"
    bad = pc.and_(filled, pc.invert(pc.match_substring_regex(stripped, flags + pattern)))
    if pc.any(bad).as_py():
        raise _Unsure  # the Python parser names the line and the value
    target = pa.int64() if kind == "int" else pa.float64()
    values = pc.if_else(filled, stripped, pa.scalar(None, pa.string()))
    try:
        typed = pc.cast(values, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise _Unsure from None  # e.g. an integer beyond int64, a spelling Arrow does not read
    if kind == "float":
        typed = pc.fill_null(typed, math.nan)
    return ArrowColumn(name, kind, typed)


def _infer_arrow(stripped, filled) -> Kind:
    import pyarrow.compute as pc

    values = pc.filter(stripped, filled)
    if not len(values):
        return "string"
    is_int = pc.match_substring_regex(values, _INT.pattern)
    short = pc.less_equal(pc.utf8_length(pc.utf8_ltrim(values, characters="+-")), 18)
    if pc.all(pc.and_(is_int, short)).as_py():
        return "int"
    if pc.all(pc.match_substring_regex(values, "(?i)" + _FLOAT.pattern)).as_py():
        return "float"
    return "string"


def parse_delimited_file(
    path: Any,
    *,
    delimiter: str = ",",
    expected_columns: list[str] | None = None,
    kinds: dict[str, Kind] | None = None,
    what: str = "the response",
) -> Table:
    """:func:`parse_delimited` of a file, streamed from disk (the body is never one bytes or
    str object in memory, unless the pure-Python parser has to decide)."""
    import os

    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        head = fh.read(65536)
        bom = 3 if head.startswith(b"\xef\xbb\xbf") else 0
        check_body(head[bom:], what=what)
        if size >= ARROW_MIN_BYTES and not _file_has_odd_breaks(fh):
            fh.seek(bom)
            header_line, start = None, bom
            while line := fh.readline():
                start += len(line)
                try:
                    text = line.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError:
                    break
                if not (text.startswith("#") or not text.strip()):
                    header_line = text
                    break
            if header_line is not None and "\r" not in header_line:

                def open_stream():
                    import pyarrow as pa

                    f = pa.OSFile(str(path), "rb")
                    f.seek(start)
                    return f

                table = _parse_arrow(
                    open_stream,
                    header_line,
                    delimiter=delimiter,
                    expected_columns=expected_columns,
                    kinds=kinds,
                    what=what,
                )
                if table is not None:
                    return table
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContentError(f"{what} sent a body that is not UTF-8 text: {exc}") from None
    del raw
    return parse_delimited(text, delimiter=delimiter, expected_columns=expected_columns,
                           kinds=kinds, what=what)  # fmt: skip


def _file_has_odd_breaks(fh) -> bool:
    fh.seek(0)
    tail = b""
    while block := fh.read(4 << 20):
        if _ODD_BREAK_BYTES.search(tail + block):
            return True
        tail = block[-2:]
    return False

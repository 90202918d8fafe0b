"""THE training-row reader: file formats, rows with their locations, shapes and row validation.

Used by dataset validation (server/services/datasets), job resolution (server/services/jobs/resolve)
and the trainer (runtime/data), so all three accept the same files and see the same rows.
Imports only the standard library (pyarrow lazily, for parquet).

Formats (by extension, `SUPPORTED`):
- .jsonl / .ndjson: one JSON object per non-blank line.
- .json: an array of objects; an object holding one list (or a "data"/"rows"/"train"/"examples"
  list) is that list; any other object is one row; JSON lines inside a .json file are accepted.
- .csv / .tsv: a header line, then one row per record; "messages"/"conversations" cells holding
  JSON text are decoded.
- .parquet: one row per record.
- .txt / .md: ONE TEXT PER NON-BLANK LINE -> {"text": line} (trailing newline removed, blank lines
  skipped). Chosen over the trainer's old "paragraphs split by blank lines" because it is what
  datasets have always recorded (row counts, previews and the tests of them), it gives every row
  a line number for errors, and the two agree for one-paragraph-per-line files. For multi-line
  documents use jsonl/parquet {"text": ...} rows.
Files whose name starts with "." and documentation files (README*, LICENSE*, ...) are never data
when a folder is scanned (`is_data_file`).

Locations are 1-based: "line N" (jsonl, csv/tsv, txt/md, json syntax errors) or "row N" (json
arrays, parquet). Every problem raises FormatError (a 400 BadRequest, code "invalid_dataset", and a
ValueError) whose message starts with the file label and the location: "train.jsonl line 7: ...".

Shapes (`detect_shape` on a row, `validate_row`):
- alpaca: {"instruction", "input"?, "output"}; aliases "prompt" for instruction and
          "response"/"completion" for output (a row is alpaca when it has "instruction", or "prompt"
          and one of the output keys).
- chat:   {"messages": [{"role", "content"}]} (chat_format "messages") or ShareGPT
          {"conversations": [{"from", "value"}]} (chat_format "sharegpt").
- text:   {"text"}.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modelyard.core.errors import BadRequest

SUPPORTED: dict[str, str] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv",
                             ".tsv": "tsv", ".parquet": "parquet", ".txt": "txt", ".md": "md"}
SUFFIXES: tuple[str, ...] = tuple(SUPPORTED)
NOT_DATA_STEMS = ("readme", "license", "licence", "changelog", "notice", "authors")

SHAPES = ("alpaca", "chat", "text")
INSTRUCTION_KEYS = ("instruction", "prompt")
OUTPUT_KEYS = ("output", "response", "completion")
CHAT_ROLES = {"system", "user", "assistant", "tool", "function", "ipython", "developer"}
SHAREGPT_FROM = {"system", "human", "user", "gpt", "assistant", "tool", "function", "function_call",
                 "observation"}
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "tool": "tool", "function": "tool", "function_call": "tool",
                  "observation": "tool"}
_JSON_LIST_KEYS = ("data", "rows", "train", "examples")
_JSON_CELLS = ("messages", "conversations")


class FormatError(BadRequest, ValueError):
    """A file or row that cannot be used as training data."""

    code = "invalid_dataset"


# --- files -------------------------------------------------------------------------------------

def file_format(path: str | Path) -> str:
    """"jsonl", "json", "csv", "tsv", "parquet", "txt" or "md"; FormatError(code unsupported_format)."""
    fmt = SUPPORTED.get(Path(path).suffix.lower())
    if fmt is None:
        raise FormatError(f"{Path(path).name}: unsupported file type (use {', '.join(sorted(SUPPORTED))})",
                          code="unsupported_format")
    return fmt


def is_data_file(path: str | Path) -> bool:
    """A supported, non-hidden file that is not a README/LICENSE-like document."""
    p = Path(path)
    return (not p.name.startswith(".") and p.suffix.lower() in SUPPORTED
            and p.stem.lower().split(".")[0] not in NOT_DATA_STEMS)


def _type(v: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(v), type(v).__name__)


def json_cell(v: Any) -> Any:
    """A csv/tsv/parquet cell holding a JSON array (messages, conversations) decoded; else as is."""
    if isinstance(v, str) and v.lstrip().startswith("["):
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def _err(label: str, where: str, msg: str, **details: Any) -> FormatError:
    return FormatError(f"{label} {where}: {msg}" if where else f"{label}: {msg}", details={"file": label, **details})


def iter_located(path: str | Path, label: str | None = None) -> Iterator[tuple[str, dict]]:
    """(location, row) for every row of a data file; location is "line N" or "row N" (1-based).
    A syntax error raises FormatError naming label (default: the file name) and the location."""
    path = Path(path)
    label = label or path.name
    fmt = file_format(path)
    if fmt in ("jsonl", "txt", "md"):
        with open(path, "rb") as f:
            for n, raw in enumerate(f, 1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise _err(label, f"line {n}", "not valid UTF-8", line=n) from None
                if n == 1:
                    text = text.lstrip("\ufeff")
                if fmt != "jsonl":
                    text = text.rstrip("\r\n")
                    if text.strip():
                        yield f"line {n}", {"text": text}
                    continue
                if not text.strip():
                    continue
                yield f"line {n}", _json_object(text, label, n)
    elif fmt == "json":
        try:
            text = path.read_bytes().decode("utf-8").lstrip("\ufeff")
        except UnicodeDecodeError as exc:
            raise _err(label, "", f"not valid UTF-8 (byte {exc.start})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg == "Extra data" and text.lstrip().startswith("{"):  # JSON lines in a .json file
                for n, line in enumerate(text.splitlines(), 1):
                    if line.strip():
                        yield f"line {n}", _json_object(line, label, n)
                return
            raise _err(label, f"line {exc.lineno}", f"invalid JSON ({exc.msg}, column {exc.colno})",
                       line=exc.lineno) from None
        if isinstance(data, dict):
            named = [data[k] for k in _JSON_LIST_KEYS if isinstance(data.get(k), list)]
            lists = [v for v in data.values() if isinstance(v, list)]
            if named:
                data = named[0]
            elif len(data) == 1 and len(lists) == 1:
                data = lists[0]
            else:
                data = [data]
        if not isinstance(data, list):
            raise _err(label, "", f"expected a JSON array of objects, got {_type(data)}")
        for n, row in enumerate(data, 1):
            if not isinstance(row, dict):
                raise _err(label, f"row {n}", f"expected a JSON object, got {_type(row)}", row=n)
            yield f"row {n}", row
    elif fmt in ("csv", "tsv"):
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t" if fmt == "tsv" else ",")
            try:
                if not reader.fieldnames:
                    raise _err(label, "", f"empty {fmt.upper()} (no header line)")
                for row in reader:
                    n = reader.line_num
                    if None in row:
                        raise _err(label, f"line {n}", "more fields than the header has", line=n)
                    if any(v is None for v in row.values()):
                        raise _err(label, f"line {n}", "fewer fields than the header has", line=n)
                    yield f"line {n}", {k: (json_cell(v) if k in _JSON_CELLS else v) for k, v in row.items()}
            except UnicodeDecodeError:
                raise _err(label, f"line {reader.line_num + 1}", "not valid UTF-8", line=reader.line_num + 1) \
                    from None
            except csv.Error as exc:
                raise _err(label, f"line {reader.line_num}", str(exc), line=reader.line_num) from None
    elif fmt == "parquet":
        import pyarrow as pa  # lazy: heavy, and only .parquet files need it
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            raise _err(label, "", f"not a valid Parquet file ({exc})") from None
        n = 0
        try:
            for batch in pf.iter_batches(batch_size=1024):
                for row in batch.to_pylist():
                    n += 1
                    yield f"row {n}", row
        except pa.ArrowException as exc:
            raise _err(label, f"row {n + 1}", f"cannot read ({exc})", row=n + 1) from None


def _json_object(text: str, label: str, n: int) -> dict:
    try:
        row = json.loads(text)
    except ValueError as exc:
        raise _err(label, f"line {n}", f"invalid JSON ({exc})", line=n) from None
    if not isinstance(row, dict):
        raise _err(label, f"line {n}", f"expected a JSON object, got {_type(row)}", line=n)
    return row


def read_rows(path: str | Path, label: str | None = None) -> Iterator[dict]:
    """Every row of a data file, as dicts (txt/md: {"text": line})."""
    for _, row in iter_located(path, label):
        yield row


def first_row(path: str | Path, label: str | None = None) -> dict | None:
    for row in read_rows(path, label):
        return row
    return None


# --- shapes ------------------------------------------------------------------------------------

def detect_shape(row: dict) -> tuple[str, str] | None:
    """(shape, chat_format) from one row, or None. chat_format is "messages"/"sharegpt" for chat."""
    if "messages" in row:
        return "chat", "messages"
    if "conversations" in row:
        return "chat", "sharegpt"
    if "instruction" in row or ("prompt" in row and any(k in row for k in OUTPUT_KEYS)):
        return "alpaca", ""
    if "text" in row:
        return "text", ""
    return None


def alpaca_keys(row: dict) -> tuple[str, str]:
    """(instruction key, output key) a row uses (the canonical names when absent)."""
    instr = next((k for k in INSTRUCTION_KEYS if k in row), INSTRUCTION_KEYS[0])
    out = next((k for k in OUTPUT_KEYS if k in row), OUTPUT_KEYS[0])
    return instr, out


def _need_str(row: dict, key: str, *, required: bool = True, nonempty: bool = True) -> str | None:
    if key not in row or (row[key] is None and not required):
        return f"missing '{key}'" if required else None
    v = row[key]
    if not isinstance(v, str):
        return f"'{key}' must be a string, got {_type(v)}"
    if nonempty and not v.strip():
        return f"'{key}' is empty"
    return None


def validate_row(row: dict, shape: str, chat_format: str = "") -> str | None:
    """What is wrong with a row of the given shape, or None. For chat, chat_format "" means: the
    row's own key (messages, else conversations)."""
    if shape == "alpaca":
        instr, out = alpaca_keys(row)
        return (_need_str(row, instr) or _need_str(row, "input", required=False, nonempty=False)
                or _need_str(row, out))
    if shape == "text":
        return _need_str(row, "text")
    if shape != "chat":
        return f"unknown shape {shape!r} ({', '.join(SHAPES)})"
    if not chat_format:
        chat_format = "sharegpt" if "conversations" in row and "messages" not in row else "messages"
    key, role_key, text_key, roles, answer = (
        ("messages", "role", "content", CHAT_ROLES, {"assistant"}) if chat_format == "messages"
        else ("conversations", "from", "value", SHAREGPT_FROM, {"gpt", "assistant"}))
    if key not in row:
        return f"missing '{key}'"
    turns = row[key]
    if not isinstance(turns, list):
        return f"'{key}' must be a list of turns, got {_type(turns)}"
    if not turns:
        return f"'{key}' is empty"
    for i, t in enumerate(turns):
        if not isinstance(t, dict):
            return f"{key}[{i}] must be an object, got {_type(t)}"
        if role_key not in t:
            return f"{key}[{i}]: missing '{role_key}'"
        if t[role_key] not in roles:
            return f"{key}[{i}]: unknown {role_key} {t[role_key]!r} (expected one of {', '.join(sorted(roles))})"
        if text_key not in t:
            return f"{key}[{i}]: missing '{text_key}'"
        if not isinstance(t[text_key], str):
            return f"{key}[{i}]: '{text_key}' must be a string, got {_type(t[text_key])}"
    if not any(t[role_key] in answer for t in turns):
        return f"'{key}' has no {'/'.join(sorted(answer))} turn to learn from"
    return None


def unknown_shape_message(row: dict) -> str:
    return (f"cannot tell the dataset's shape from keys {sorted(row)[:10]}; expected alpaca "
            "(instruction/input/output, or prompt/response), chat (messages, or sharegpt conversations) "
            "or text (text)")


def validate_file(path: str | Path, label: str | None = None, shape: str | None = None,
                  chat_format: str | None = None) -> Iterator[tuple[str, dict, str, str]]:
    """(location, row, shape, chat_format) for every row, each validated; the shape is detected from
    the first row unless given. FormatError (code unknown_shape, or invalid_dataset) on the first
    bad row."""
    label = label or Path(path).name
    for loc, row in iter_located(path, label):
        if shape is None:
            found = detect_shape(row)
            if found is None:
                raise FormatError(f"{label} {loc}: {unknown_shape_message(row)}", code="unknown_shape",
                                  details={"file": label, "location": loc})
            shape, chat_format = found
        problem = validate_row(row, shape, chat_format or "")
        if problem:
            raise FormatError(f"{label} {loc}: {problem}", details={"file": label, "location": loc, "shape": shape})
        yield loc, row, shape, chat_format or ""


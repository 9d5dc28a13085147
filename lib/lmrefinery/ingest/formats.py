"""Input formats. A reader turns one input object into ``Record`` (a document
as a dict) and ``Quarantine`` (a piece of input it could not use, with the
reason and where it was) items, streaming, in file order."""
from __future__ import annotations

import csv
import io
import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..core import storage
from ..core.stage import OptionsError
from .lines import MAX_SNIPPET, iter_line_range


@dataclass
class Record:
    doc: dict                       # text, url, title, lang, meta...
    pos: str                        # position inside the object (line no., offset): part of the id


@dataclass
class Quarantine:
    reason: str
    pos: str
    detail: str = ""
    snippet: str | None = None
    meta: dict = field(default_factory=dict)


@dataclass
class Skip:
    """Input that is not a document by design (a WARC request record, a Talk
    page): not quarantined, but counted by reason in the part's counters."""
    reason: str
    n: int = 1


class ReaderOptions(BaseModel):
    """``inputs[].options`` of a format. Each reader declares its own subclass;
    an unknown key is an error (at recipe load, naming the file and the key),
    exactly as for stage parameters."""
    model_config = ConfigDict(extra="forbid")

    split_bytes: int = Field(8 << 20, ge=0, description="byte range per read task for splittable "
                             "files (JSON Lines, text, multistream bz2 dumps); 0 = whole files. A fixed size, "
                             "not one derived from the worker count, so outputs are the same on any cluster")


class LineOptions(ReaderOptions):
    max_doc_bytes: int = Field(64 << 20, ge=1, description="a longer line is quarantined as too_large")


class JsonArrayOptions(ReaderOptions):
    records_key: str | None = Field(None, description="key of the record array inside a JSON object")


class CsvOptions(ReaderOptions):
    delimiter: str | None = Field(None, min_length=1, max_length=1,
                                  description="field delimiter (default: tab for .tsv / format tsv, else comma)")


Reader = Callable[[dict], Iterator["Record | Quarantine | Skip"]]
READERS: dict[str, Reader] = {}
OPTIONS: dict[str, type[ReaderOptions]] = {}


def reader(*names: str, options: type[ReaderOptions] = ReaderOptions):
    def deco(fn: Reader) -> Reader:
        for n in names:
            READERS[n] = fn
            OPTIONS[n] = options
        return fn
    return deco


def options_model(fmt: str) -> type[ReaderOptions]:
    get_reader(fmt)
    return OPTIONS[fmt]


def check_options(fmt: str, options: dict[str, Any] | None) -> ReaderOptions:
    """The typed options of format `fmt`; OptionsError lists every bad key."""
    model = options_model(fmt)
    try:
        return model(**(options or {}))
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = ".".join(str(x) for x in err["loc"])
            if err["type"] == "extra_forbidden":
                known = ", ".join(sorted(model.model_fields))
                problems.append((key, f"unknown option for format {fmt!r} (known: {known})"))
            else:
                problems.append((key, f"{err['msg']} (got {err.get('input')!r})"))
        raise OptionsError(problems) from None


def spec_options(spec: dict, model: type[ReaderOptions] | None = None) -> Any:
    """The typed options of a read task (its format's model unless `model` is given)."""
    if model is None:
        return check_options(spec.get("format") or "jsonl", spec.get("options"))
    try:
        return model(**(spec.get("options") or {}))
    except ValidationError as e:
        raise OptionsError([(".".join(str(x) for x in err["loc"]), err["msg"]) for err in e.errors()]) from None


def get_reader(fmt: str) -> Reader:
    if fmt not in READERS:
        # formats added by other ingest modules register on import
        from . import _load_formats

        _load_formats()
    if fmt not in READERS:
        from ..core.names import unknown_name

        raise KeyError(unknown_name("input format", fmt, sorted(READERS)))
    return READERS[fmt]


def snippet(b: bytes | str) -> str:
    if isinstance(b, bytes):
        b = b[:MAX_SNIPPET].decode("utf-8", "backslashreplace")
    return b[:MAX_SNIPPET]


def map_fields(obj: dict[str, Any], fields: dict[str, str] | None) -> dict[str, Any]:
    """Our column <- source field (dotted paths allowed). Unmapped source fields go to meta."""
    def get(o, path):
        for p in path.split("."):
            if not isinstance(o, dict) or p not in o:
                return None
            o = o[p]
        return o

    mapping = {"text": "text", "url": "url", "title": "title", "lang": "lang", "id": "id"}
    mapping.update(fields or {})
    doc, used = {}, set()
    for ours, theirs in mapping.items():
        v = get(obj, theirs)
        if v is not None:
            doc[ours] = v
            used.add(theirs.split(".")[0])
    meta = {k: v for k, v in obj.items() if k not in used}
    if "id" in doc:
        meta["source_id"] = doc.pop("id")
    doc["meta"] = meta
    return doc


def _check_text(doc: dict, pos: str, raw) -> Record | Quarantine:
    t = doc.get("text")
    if t is None:
        return Quarantine("missing_field:text", pos, "record has no text field (see the input's `fields` mapping)",
                          snippet(raw if isinstance(raw, (bytes, str)) else json.dumps(raw, ensure_ascii=False)))
    if not isinstance(t, str):  # a number or an object is not a document: reject, never rewrite
        return Quarantine("text_not_a_string", pos, f"record's text is a JSON {_json_type(t)}, not a string",
                          snippet(raw if isinstance(raw, (bytes, str)) else json.dumps(raw, ensure_ascii=False)))
    return Record(doc, pos)


def _json_type(v) -> str:
    return {bool: "boolean", int: "number", float: "number", dict: "object", list: "array"}.get(type(v),
                                                                                             type(v).__name__)


@reader("jsonl", "ndjson", options=LineOptions)
def read_jsonl(spec: dict) -> Iterator[Record | Quarantine]:
    """JSON Lines, one record per line, fields mapped to columns."""

    max_bytes = spec_options(spec, LineOptions).max_doc_bytes
    for pos, off, line, err in iter_line_range(spec, max_bytes):
        n = pos.split(":", 1)[1]
        if err:
            reason = err.split(":", 1)[0]
            yield Quarantine(reason, pos, f"{spec['rel']} at {pos} (decompressed byte {off}): {err}",
                             snippet(line) if line else None, {"offset": off})
            continue
        assert line is not None  # iter_line_range: a line or an error
        if not line.strip():
            continue
        try:
            s = line.decode("utf-8")
        except UnicodeDecodeError as e:
            yield Quarantine("invalid_utf8", pos, f"{spec['rel']} line {n}: {e}", snippet(line), {"offset": off})
            continue
        try:
            obj = json.loads(s)
        except ValueError as e:
            yield Quarantine("malformed_json", pos, f"{spec['rel']} line {n}: {e}", snippet(s), {"offset": off})
            continue
        if not isinstance(obj, dict):
            yield Quarantine("not_an_object", pos, f"{spec['rel']} line {n}: JSON {type(obj).__name__}",
                             snippet(s), {"offset": off})
            continue
        yield _check_text(map_fields(obj, spec.get("fields")), pos, s)


def json_array_items(spec: dict, records_key: str | None, *, encoding: str = "utf-8",
                     first_list: bool = False) -> Iterator[tuple[int, Any] | Quarantine]:
    """(index, item) of a whole-file JSON array, or of the array under ``records_key`` in a
    wrapping object (with ``first_list`` and no key: the object's first list value); one
    file-level Quarantine instead when the file cannot be read or holds no array."""
    rel = spec["rel"]
    try:
        with storage.open_read(spec["path"]) as f:
            data = f.read()
    except Exception as e:  # noqa: BLE001 - any read/decompression failure quarantines the file
        yield Quarantine("corrupt_compression", "file", f"{rel}: {type(e).__name__}: {e}")
        return
    try:
        obj = json.loads(data.decode(encoding))
    except UnicodeDecodeError as e:
        yield Quarantine("invalid_utf8", "file", f"{rel}: {e}", snippet(data))
        return
    except ValueError as e:
        yield Quarantine("malformed_json", "file", f"{rel}: {e}", snippet(data))
        return
    if isinstance(obj, dict) and records_key:
        obj = obj.get(records_key)
    elif isinstance(obj, dict) and first_list:
        obj = next((v for v in obj.values() if isinstance(v, list)), None)
    if not isinstance(obj, list):
        yield Quarantine("not_an_array", "file", f"{rel}: expected a JSON array of records", snippet(data))
        return
    yield from enumerate(obj)


@reader("json", options=JsonArrayOptions)
def read_json_array(spec: dict) -> Iterator[Record | Quarantine]:
    """A JSON array of records (options.records_key for a wrapped array)."""
    for item in json_array_items(spec, spec_options(spec, JsonArrayOptions).records_key):
        if isinstance(item, Quarantine):
            yield item
            return
        i, rec = item
        pos = f"item:{i}"
        if not isinstance(rec, dict):
            yield Quarantine("not_an_object", pos, f"{spec['rel']} item {i}", snippet(json.dumps(rec)))
            continue
        yield _check_text(map_fields(rec, spec.get("fields")), pos, rec)


@reader("parquet")
def read_parquet(spec: dict) -> Iterator[Record | Quarantine]:
    """Parquet rows, fields mapped to columns."""
    import pyarrow.parquet as pq

    try:
        src = io.BytesIO(storage.read_bytes(spec["path"])) if storage.is_s3(spec["path"]) else spec["path"]
        pf = pq.ParquetFile(src)
    except Exception as e:
        yield Quarantine("unreadable_parquet", "file", f"{spec['rel']}: {type(e).__name__}: {e}")
        return
    i = 0
    for batch in pf.iter_batches(batch_size=4096, use_threads=False):
        for rec in batch.to_pylist():
            yield _check_text(map_fields(rec, spec.get("fields")), f"row:{i}", rec)
            i += 1


@reader("csv", "tsv", options=CsvOptions)
def read_csv(spec: dict) -> Iterator[Record | Quarantine]:
    """CSV/TSV rows with a header line, fields mapped to columns."""
    tab = spec.get("format") == "tsv" or spec["path"].endswith(".tsv")
    delim = spec_options(spec, CsvOptions).delimiter or ("\t" if tab else ",")
    with storage.open_read(spec["path"]) as f:
        # surrogateescape: a bad byte stays inside its own row (as a lone surrogate), so
        # exactly that row is quarantined and every other row is read
        text = io.TextIOWrapper(f, encoding="utf-8", errors="surrogateescape", newline="")
        rows = csv.DictReader(text, delimiter=delim)
        i = 0
        while True:
            try:
                rec = next(rows)
            except StopIteration:
                return
            except (csv.Error, EOFError, OSError, zlib.error) as e:
                yield Quarantine("malformed_csv", f"row:{i}", f"{spec['rel']} row {i}: {e}")
                return
            bad = _undecodable(rec)
            if bad:
                yield Quarantine("invalid_utf8", f"row:{i}", f"{spec['rel']} row {i} (line {rows.line_num}): "
                                 f"invalid UTF-8 in column {bad!r}", snippet(_escaped_json(rec)))
            else:
                yield _check_text(map_fields(dict(rec), spec.get("fields")), f"row:{i}", json.dumps(rec))
            i += 1


def _undecodable(rec: dict) -> str | None:
    """The first column whose value holds a byte that was not UTF-8 (a lone surrogate)."""
    for k, v in rec.items():
        for x in (k, *(v if isinstance(v, list) else [v])):
            if isinstance(x, str) and any("\udc80" <= c <= "\udcff" for c in x):
                return str(k)
    return None


def _escaped_json(rec: dict) -> str:
    return json.dumps(rec, ensure_ascii=True, default=str)


@reader("text", "txt", options=LineOptions)
def read_text_lines(spec: dict) -> Iterator[Record | Quarantine]:
    """One document per line (e.g. already-extracted Wikipedia plain text)."""

    max_bytes = spec_options(spec, LineOptions).max_doc_bytes
    for pos, _off, line, err in iter_line_range(spec, max_bytes):
        kind, n = pos.split(":", 1)
        if err:
            yield Quarantine(err.split(":", 1)[0], pos, f"{spec['rel']} {pos}: {err}",
                             snippet(line) if line else None)
            continue
        assert line is not None
        try:
            s = line.decode("utf-8").strip()
        except UnicodeDecodeError as e:
            yield Quarantine("invalid_utf8", pos, f"{spec['rel']} {pos}: {e}", snippet(line))
            continue
        if s:
            yield Record({"text": s, "meta": {kind if kind == "line" else "offset": int(n)}}, pos)

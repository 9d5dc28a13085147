"""The `read` stage: every input object of the recipe becomes one part of
documents (and one part of quarantined input with reasons)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import Field

from ..core.schema import doc_id, docs_to_table, with_reason
from ..core.stage import BatchResult, Stage, StageParams, register
from .formats import Quarantine, Record, Skip, check_options, get_reader


class ReadParams(StageParams):
    batch_rows: int = Field(2048, ge=1, description="documents per Arrow batch while reading")


@register
class ReadStage(Stage):
    name = "read"
    kind = "read"
    Params = ReadParams
    params: ReadParams
    description = "Read the recipe's inputs (jsonl, json, parquet, csv, text, and the ingest formats) into documents."

    @classmethod
    def plan_tasks(cls, files: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One read task per input object, or per byte range of a large splittable one."""
        from .split import plan_read_tasks

        return plan_read_tasks(files)

    @classmethod
    def check_input(cls, fmt: str, options: dict[str, Any] | None) -> Any:
        return check_options(fmt, options)

    def read(self, spec: dict[str, Any]) -> Iterator[BatchResult]:
        rdr = get_reader(spec["format"])
        kept, bad = [], []
        skipped: dict[str, int] = {}
        for item in self._safe(rdr, spec):
            if isinstance(item, Skip):
                skipped[f"skipped:{item.reason}"] = skipped.get(f"skipped:{item.reason}", 0) + item.n
                continue
            if isinstance(item, Record):
                d = item.doc
                d["id"] = doc_id(spec["input"], spec["rel"], item.pos)
                d["source"] = spec["input"]
                meta = d.setdefault("meta", {})
                if isinstance(meta, dict):
                    meta.setdefault("file", spec["rel"])
                    meta.setdefault("pos", item.pos)
                    if spec.get("licence"):
                        meta.setdefault("licence", spec["licence"])
                kept.append(d)
            else:
                bad.append(item)
            if len(kept) >= self.params.batch_rows:
                yield BatchResult(docs_to_table(kept))
                kept = []
        last = self._quarantine(spec, bad, kept)
        last.counters.update(skipped)
        yield last

    def _safe(self, rdr, spec) -> Iterator[Record | Quarantine]:
        """A reader that raises loses only what it had not yet read."""
        try:
            yield from rdr(spec)
        except Exception as e:  # noqa: BLE001 - turned into a quarantine record
            yield Quarantine("reader_error", "error", f"{spec['rel']}: {type(e).__name__}: {e}")

    def _quarantine(self, spec, bad: list[Quarantine], kept: list[dict]) -> BatchResult:
        rows, reasons = [], []
        for q in bad:
            rows.append({"id": doc_id(spec["input"], spec["rel"], "quarantine", q.pos, q.reason),
                         "text": q.snippet, "source": spec["input"],
                         # input-relative, like the document ids: outputs do not depend on where the inputs sit
                         "meta": {"file": spec["rel"], "pos": q.pos, "error": q.detail, **q.meta}})
            reasons.append(q.reason)
        rejected = with_reason(docs_to_table(rows), self.name, reasons) if rows else None
        return BatchResult(docs_to_table(kept), rejected)

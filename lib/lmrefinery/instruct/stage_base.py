"""What the instruct stages share: their base class (whose code hash also covers the
conf/ files their logic reads), writing edited rows back into a batch, and the
parts of a global instruct stage (`PartOf`: one input part and how to commit it)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa

from ..core import storage
from ..core.parts import finish_part, global_part
from ..core.schema import meta_dumps
from ..core.stage import BatchResult, Stage


class _InstructStage(Stage):
    """The stages here are thin: the logic lives in helper modules and conf/
    files, so those are part of the code hash too (an edit re-runs the stage)."""

    code_outside: ClassVar[tuple[str, ...]] = ("lmrefinery.segment",)   # common.tokens segments Chinese there

    @classmethod
    def code_hash(cls) -> str:
        import hashlib

        from ..core.resources import fingerprint_files
        from .common import conf_folder

        h = hashlib.sha256(super().code_hash().encode())
        folder = conf_folder()
        h.update(fingerprint_files(folder, (".txt", ".yaml")))
        h.update(fingerprint_files(folder.joinpath("templates"), (".yaml",)))
        return h.hexdigest()[:16]


def replace_rows(batch: pa.Table, rows: list[dict[str, Any]]) -> pa.Table:
    """Write back text/lang/meta of edited rows; other columns untouched."""
    out = batch
    for col, vals in (("text", [r.get("text") for r in rows]), ("lang", [r.get("lang") for r in rows]),
                      ("meta", [meta_dumps(r["meta"]) for r in rows])):
        i = out.column_names.index(col)
        out = out.set_column(i, col, pa.array(vals, pa.string()))
    return out


@dataclass(frozen=True)
class PartOf:
    """One input part of a global instruct stage, with what committing its output needs."""

    stage: str
    stage_dir: str
    fingerprint: str
    part: int
    input: str
    input_desc: str

    def commit(self, results: list[BatchResult], n_in: int, t0: float) -> dict[str, Any]:
        """Write the part's kept rows and rejects and its marker; returns the marker."""
        task = global_part(self.stage, self.stage_dir, self.fingerprint, self.part, self.input_desc)
        return finish_part(task, results, n_in, t0)


def parts_of(job: Any) -> list[PartOf]:
    """Every input part of a global stage's job."""
    return [PartOf(job.name, job.stage_dir, job.fingerprint, i, p, storage.relpath(p, job.ctx["output_root"]))
            for i, p in enumerate(job.inputs)]

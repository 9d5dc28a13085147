"""A finished run's output folder, read back for the report and `rejects`:
stats.json, each stage's manifest, its kept parts and its rejects."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from ..core import manifest as mf
from ..core import storage
from ..core.schema import BASE_COLUMNS, REJECT_REASON, REJECT_STAGE

# columns that are the document itself, not a signal about it
SIGNAL_EXCLUDE = set(BASE_COLUMNS) | {REJECT_REASON, REJECT_STAGE}


@dataclass
class StageInfo:
    root: str
    index: int
    name: str
    manifest: dict
    row: dict  # the stage's row in stats.json

    @property
    def dirname(self) -> str:
        return f"{self.index:02d}-{self.name}"

    @property
    def dir(self) -> str:
        return storage.join(self.root, "stages", self.dirname)

    @property
    def rejected(self) -> dict[str, int]:
        return dict(self.manifest.get("counts", {}).get("rejected", {}))

    def reject_tables(self, columns: list[str] | None = None) -> Iterator[tuple[str, pa.Table]]:
        for r in self.manifest.get("rejects", []):
            if r.get("rows"):
                yield r["path"], storage.read_parquet(storage.join(self.dir, r["path"]), columns=columns)

    def data_tables(self, columns: list[str] | None = None) -> Iterator[tuple[str, pa.Table]]:
        for o in self.manifest.get("outputs", []):
            if o.get("rows"):
                yield o["path"], storage.read_parquet(storage.join(self.dir, o["path"]), columns=columns)

    def columns(self, rejects: bool | None = None) -> list[str]:
        """Column names of the stage's kept parts (rejects=False), rejected parts (True) or
        whichever comes first (None); read from the first part's Parquet schema."""
        entries = {False: self.manifest.get("outputs", []), True: self.manifest.get("rejects", [])}
        chosen = entries[rejects] if rejects is not None else entries[False] + entries[True]
        for o in sorted(chosen, key=lambda e: not e.get("rows")):  # a part with rows has the full schema
            uri = storage.join(self.dir, o["path"])
            try:
                import pyarrow.parquet as pq

                return list(pq.read_schema(uri).names) if not storage.is_s3(uri) \
                    else storage.read_parquet(uri).column_names
            except (OSError, ValueError):
                continue
        return []

    def artifact(self, name: str) -> dict | None:
        """A JSON side file of the stage (e.g. dataset.json, dedup_report.json), if present."""
        return mf.read_json(storage.join(self.dir, name))


@dataclass
class RunData:
    root: str
    stats: dict
    stages: list[StageInfo] = field(default_factory=list)

    @classmethod
    def open(cls, root: str) -> RunData:
        from ..core.recipe import RecipeError

        root = root.rstrip("/")
        stats = mf.read_json(storage.join(root, "stats.json"))
        if stats is None:
            raise RecipeError(f"{storage.join(root, 'stats.json')}: not found; is {root} the output folder of a run?")
        return cls.from_stats(root, stats)

    @classmethod
    def from_stats(cls, root: str, stats: dict) -> RunData:
        root = root.rstrip("/")
        run = cls(root, stats)
        for row in stats.get("stages", []):
            sdir = storage.join(root, "stages", f"{row['index']:02d}-{row['stage']}")
            m = mf.read_manifest(sdir)
            if m is not None:
                run.stages.append(StageInfo(root, row["index"], row["stage"], m, row))
        return run

    def stage(self, name: str) -> StageInfo | None:
        return next((s for s in self.stages if s.name == name), None)

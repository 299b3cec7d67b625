"""The I2I table on disk, and the one-machine job that computes it.

Layout of an I2I folder (a Parquet dataset: ``pandas.read_parquet(DIR)`` reads it whole)::

    _i2i.json              settings, model version, embeddings folder, notes, blocks; complete flag
    part-000000.parquet    one file per query block: note_id (string), neighbour_ids (list of
    part-000001.parquet    string, best first), scores (list of float32 cosines at the dim);
    ...                    the settings and model version in the schema metadata (b"uninote.i2i")

A part file is written to a hidden temporary name and renamed into place, so it exists whole or
not at all; writing a block again (a retried task, a resumed job) replaces it with the same rows.
A job re-run on the same folder with the same settings computes only the missing blocks; other
settings are refused. ``read_i2i`` refuses a folder whose job has not finished.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import numpy as np

from uninote.embeddings import NoteEmbeddings
from uninote.errors import ConfigError, UniNoteError
from uninote.fileio import atomic_write
from uninote.index.i2i import (I2ISettings, IndexPart, index_bounds, merged_search, neighbours_of_block, part_bounds,
                               query_vectors)

MANIFEST = "_i2i.json"  # a leading underscore: Parquet readers skip it
FORMAT = "uninote-i2i/1"
META_KEY = b"uninote.i2i"


def part_name(block: int) -> str:
    return f"part-{block:06d}.parquet"


class IncompleteI2IError(UniNoteError):
    """An I2I folder whose job has not finished (re-run it with the same --out to complete it)."""


class I2IOutput:
    """The output folder of one I2I job: settings recorded first, then one part per query block."""

    def __init__(self, directory: str | Path, info: dict):
        self.directory, self.info = Path(directory), info
        path = self.directory / MANIFEST
        if path.is_file():
            previous = json.loads(path.read_text())
            if previous.get("format") != FORMAT or previous.get("info") != info:
                raise ConfigError(f"{self.directory}: holds an I2I table of other settings or embeddings "
                                  f"({previous.get('info')}); write to a new folder")
        elif self.directory.exists() and any(self.directory.iterdir()):
            raise ConfigError(f"{self.directory}: exists and is not an I2I folder; write to a new folder")
        self.directory.mkdir(parents=True, exist_ok=True)
        for leftover in self.directory.glob(".tmp-*"):
            leftover.unlink()
        self._save(complete=False)

    def _save(self, complete: bool, rows: int | None = None) -> None:
        manifest = {"format": FORMAT, "info": self.info, "complete": complete, "rows": rows}
        atomic_write(self.directory / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1).encode())

    @property
    def blocks(self) -> int:
        return -(-self.info["notes"] // self.info["settings"]["query_block"])

    def done(self) -> set[int]:
        """Blocks whose part file is in place."""
        return {int(p.stem.split("-")[1]) for p in self.directory.glob("part-*.parquet")}

    def write_block(self, block: int, ids, rows: np.ndarray, hits: list[tuple[np.ndarray, np.ndarray]]) -> Path:
        """Write the part of ``block``: queries at note ``rows``, each with its (slots, scores);
        ``ids`` is the version's note ids as a ``pyarrow`` string array (``id_array``)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        offsets = np.concatenate([[0], np.cumsum([len(slots) for slots, _ in hits])]).astype(np.int32)
        slots = np.concatenate([slots for slots, _ in hits] + [np.zeros(0, np.int64)])
        scores = np.concatenate([sc for _, sc in hits] + [np.zeros(0, np.float32)]).astype(np.float32)
        table = pa.table({"note_id": ids.take(pa.array(rows)),
                          "neighbour_ids": pa.ListArray.from_arrays(pa.array(offsets), ids.take(pa.array(slots))),
                          "scores": pa.ListArray.from_arrays(pa.array(offsets), pa.array(scores))})
        table = table.replace_schema_metadata({META_KEY: json.dumps(self.info, ensure_ascii=False).encode()})
        final = self.directory / part_name(block)
        tmp = self.directory / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
        pq.write_table(table, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        return final

    def close(self) -> Path:
        missing = sorted(set(range(self.blocks)) - self.done())
        if missing:
            raise IncompleteI2IError(f"{self.directory}: blocks {missing[:10]} have no part file")
        self._save(complete=True, rows=self.info["notes"])
        return self.directory


def read_i2i(directory: str | Path):
    """The finished I2I table of ``directory`` as a pandas DataFrame, in note order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = Path(directory)
    manifest = json.loads((d / MANIFEST).read_text()) if (d / MANIFEST).is_file() else None
    if manifest is None or manifest.get("format") != FORMAT:
        raise FileNotFoundError(f"{d}: not an I2I folder (no {MANIFEST})")
    if not manifest["complete"]:
        raise IncompleteI2IError(f"{d}: the I2I job has not finished; re-run it with the same --out")
    files = sorted(d.glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]).to_pandas()


def job_info(emb: NoteEmbeddings, embeddings_dir, settings: I2ISettings) -> dict:
    return {"settings": settings.to_json(), "model_version": emb.model_version, "notes": len(emb),
            "full_dim": emb.dim, "embeddings": str(Path(embeddings_dir).resolve())}


def id_array(ids: list[str]):
    """The note ids as one ``pyarrow`` string array (parts take their rows from it)."""
    import pyarrow as pa

    return pa.array(ids, pa.string())


def i2i_local(embeddings_dir: str | Path, out: str | Path, settings: I2ISettings,
              progress: bool = True) -> dict:
    """Compute the I2I table of ``embeddings_dir`` in this process (no Ray): index parts one per
    embedding shard, query blocks streamed; returns timings and counts."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    emb = NoteEmbeddings.load(embeddings_dir)
    settings.validate(emb.dim)
    output = I2IOutput(out, job_info(emb, embeddings_dir, settings))
    todo = sorted(set(range(output.blocks)) - output.done())
    n = len(emb)
    parts = [IndexPart(emb.note, a, b, settings, n) for a, b in index_bounds(part_bounds(emb.note), settings.strategy)]
    built = time.perf_counter()
    search = merged_search(parts, settings)
    ids = id_array(emb.note_ids)
    qb = settings.query_block
    for block in tqdm(todo, desc="i2i", unit="block", disable=not progress):
        a, b = block * qb, min((block + 1) * qb, n)
        hits = neighbours_of_block(search, query_vectors(emb.note, a, b), np.arange(a, b), settings, n)
        output.write_block(block, ids, np.arange(a, b), hits)
    output.close()
    end = time.perf_counter()
    return {"notes": n, "blocks": len(todo), "build_s": built - start, "search_s": end - built,
            "total_s": end - start}

"""``NoteEmbeddings`` on disk: shards written one batch of notes at a time, opened memory-mapped.

Layout (``uninote.shards``)::

    manifest.json                 kind, model_version, dim, storage dtype per granularity, meta,
                                  one entry per shard (rows per array, bytes + sha256 per file)
    shard-00000/note.npy          (n, D)   text.npy (n, D)
                image.npy         (m, D)   image_owner.npy (m,) note row in the whole version
                region.npy        (r, D)   region_owner.npy (r,)  region_image.npy (r,)
                ids.json          the note ids of the shard, in row order

``EmbeddingWriter.write`` appends one shard (a ``NoteEmbeddings`` of the next notes; its owner
rows are local and become global here), so a corpus of any size is written with one shard's
memory. ``EmbeddingWriter(..., resume=True)`` on a folder with an interrupted write checks the
shards already there (a corrupt one is reported by name) and says which note comes next.
``load_sharded`` maps every matrix (``np.memmap``, or a ``ShardedArray`` over several shards): no
vector is read until it is used. Owners and ids are small and read into RAM.

Storage dtype per granularity: ``float16`` (the default: half the bytes; fashion-test ndcg@10
moves by less than 0.001 at every dim, docs/results/model.md) or ``float32``; vectors are read
back as float32 by every scoring path, and float32 folders load as they are. Embedding without
regions writes zero region rows.

The previous format (``embeddings.safetensors`` + ``embeddings.json``) still loads, into RAM;
``uninote embed --migrate DIR`` rewrites such a folder as shards.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from uninote.data.corpus import Corpus
from uninote.errors import ConfigError
from uninote.shards import MANIFEST, ShardWriter, open_shards, read_manifest

KIND = "uninote-embeddings/2"
VECTORS = ("note", "text", "image", "region")
OWNERS = {"image_owner": "int64", "region_owner": "int64", "region_image": "int64"}
DEFAULT_DTYPES = {g: "float16" for g in VECTORS}  # measured: docs/results/model.md, "Storage dtype"
DEFAULT_SHARD_NOTES = 100_000


def is_sharded(directory: str | Path) -> bool:
    return (Path(directory) / MANIFEST).is_file()


def storage_dtypes(dtypes: dict[str, str] | str | None) -> dict[str, str]:
    """Per-granularity storage dtypes from a dict, one dtype for all, or None (the defaults)."""
    if isinstance(dtypes, str):
        dtypes = {g: dtypes for g in VECTORS}
    out = dict(DEFAULT_DTYPES, **(dtypes or {}))
    bad = {g: d for g, d in out.items() if g not in VECTORS or d not in ("float32", "float16")}
    if bad:
        raise ConfigError(f"storage dtypes {bad}: granularities are {VECTORS}, dtypes float32 or float16")
    return out


class EmbeddingWriter:
    """Append ``NoteEmbeddings`` shard by shard to ``directory``; ``close`` makes it loadable."""

    def __init__(self, directory: str | Path, model_version: str, dtypes: dict[str, str] | str | None = None,
                 regions: bool = True, meta: dict[str, Any] | None = None, resume: bool = False):
        self.dtypes, self.regions = storage_dtypes(dtypes), regions
        if resume and is_sharded(directory):
            previous = read_manifest(directory)["meta"]
            if previous.get("model_version") != model_version or previous.get("regions") != regions:
                raise ValueError(f"{directory}: the shards there were written by model "
                                 f"{previous.get('model_version')} (regions={previous.get('regions')}), not "
                                 f"{model_version} (regions={regions}); write to a new folder")
        info = {"kind": KIND, "model_version": model_version, "regions": regions, "meta": dict(meta or {})}
        self.shards = ShardWriter(directory, {**self.dtypes, **OWNERS}, meta=info, resume=resume)

    @classmethod
    def append_to(cls, directory: str | Path) -> "EmbeddingWriter":
        """A writer that adds notes to a complete folder as new shards, with the folder's own dtypes
        and region setting; the folder stays loadable after every ``write`` (no ``close`` needed)."""
        manifest = read_manifest(directory)
        if manifest["meta"].get("kind") != KIND:
            raise ValueError(f"{directory}: not an embeddings folder (kind {manifest['meta'].get('kind')!r})")
        self = cls.__new__(cls)
        self.dtypes = {g: manifest["arrays"][g] for g in VECTORS}
        self.regions = bool(manifest["meta"].get("regions", True))
        self.shards = ShardWriter(directory, manifest["arrays"], append=True)
        return self

    @property
    def done(self) -> int:
        """Shards already written (a resumed write continues with this shard)."""
        return self.shards.done

    @property
    def notes_done(self) -> int:
        return self.shards.rows_done("note")

    def write(self, emb) -> str:
        """Append the notes of ``emb`` (owner rows relative to ``emb``) as the next shard."""
        self._note_meta(emb.dim, emb.meta)
        return self.shards.write(shard_arrays(emb, self.notes_done, self.regions), ids=emb.note_ids)

    def adopt(self, folder: str | Path, entry: dict, dim: int, meta: dict[str, Any]) -> str:
        """Append a shard another process wrote with ``write_shard_files(folder, shard_arrays(...))``
        (``dim`` and ``meta``: its ``NoteEmbeddings``' dim and meta, as ``write`` records them)."""
        self._note_meta(dim, meta)
        return self.shards.adopt(folder, entry)

    def _note_meta(self, dim: int, meta: dict[str, Any]) -> None:
        self.shards.manifest["meta"]["dim"] = dim
        self.shards.manifest["meta"]["meta"].update(meta)

    def close(self, meta: dict[str, Any] | None = None) -> Path:
        self.shards.manifest["meta"]["meta"].update(meta or {})
        return self.shards.close()


def shard_arrays(emb, base: int, regions: bool = True) -> dict[str, np.ndarray]:
    """The arrays of one shard holding ``emb``'s notes as rows ``base..``: owner rows made global,
    zero region rows when ``regions`` is False."""
    arrays = {"note": emb.note, "text": emb.text, "image": emb.image, "image_owner": emb.image_owner + base}
    if regions:
        arrays.update(region=emb.region, region_owner=emb.region_owner + base, region_image=emb.region_image)
    else:
        arrays.update(region=np.zeros((0, emb.dim), np.float32), region_owner=np.zeros(0, np.int64),
                      region_image=np.zeros(0, np.int64))
    return arrays


def load_sharded(cls, directory: str | Path, verify: bool = False):
    """A memory-mapped ``cls`` (``NoteEmbeddings``) of a sharded folder (``verify``: check every checksum)."""
    shards = open_shards(directory)
    info = shards.meta
    if info.get("kind") != KIND:
        raise ValueError(f"{directory}: not an embeddings folder (kind {info.get('kind')!r})")
    if verify:
        shards.verify()
    dim = info.get("dim", 0)
    arrays = {}
    for g in VECTORS:
        a = shards.array(g)
        arrays[g] = a if a.ndim == 2 else np.zeros((0, dim), shards.manifest["arrays"][g])
    owners = {k: np.asarray(shards.array(k), dtype=np.int64) for k in OWNERS}
    return cls(shards.ids(), arrays["note"], arrays["text"], arrays["image"], owners["image_owner"],
                          arrays["region"], owners["region_owner"], owners["region_image"],
                          info["model_version"], dict(info.get("meta", {}), storage=shards.manifest["arrays"]))


def save_sharded(emb, directory: str | Path, dtypes: dict[str, str] | str | None = None,
                 shard_notes: int = DEFAULT_SHARD_NOTES, regions: bool = True) -> Path:
    """Write an in-memory ``NoteEmbeddings`` as shards of ``shard_notes`` notes."""
    writer = EmbeddingWriter(directory, emb.model_version, dtypes, regions, meta=emb.meta)
    for start in range(0, max(len(emb), 1), shard_notes):
        writer.write(emb.rows(start, min(start + shard_notes, len(emb))))
    return writer.close()


def costs(directory: str | Path) -> dict[str, dict[str, float]]:
    """Per granularity: rows, storage dtype, bytes on disk, and bytes per note on disk and in RAM.

    RAM is what the loaded version holds for that granularity: vectors are memory-mapped (only the
    pages searches touch are resident), owners are in RAM; an index built on it adds its own.
    """
    shards = open_shards(directory)
    n = max(1, shards.rows("note"))
    out = {}
    for g in VECTORS:
        owner = {"image": ["image_owner"], "region": ["region_owner", "region_image"]}.get(g, [])
        disk = shards.disk_bytes(g) + sum(shards.disk_bytes(k) for k in owner)
        ram = sum(shards.rows(k) * 8 for k in owner)
        out[g] = {"rows": shards.rows(g), "dtype": shards.manifest["arrays"][g], "disk_bytes": disk,
                  "disk_bytes_per_note": disk / n, "ram_bytes_per_note": ram / n,
                  "vectors_per_note": shards.rows(g) / n}
    return out


def embed_to_disk(model, corpus, directory: str | Path, batch_size: int = 256, dtypes=None, regions: bool = True,
                  shard_notes: int = DEFAULT_SHARD_NOTES, progress: bool = True,
                  meta: dict[str, Any] | None = None, model_version: str | None = None) -> Path:
    """Embed ``corpus`` with ``model.embed_corpus`` one shard of notes at a time, straight to disk.

    Peak memory is one shard's embeddings, whatever the corpus size. A folder left by an interrupted
    run (same model, same corpus order, same ``shard_notes``) is resumed at its first missing shard;
    the shards already there are checked first (a corrupt one raises ``CorruptShardError`` by name).
    A corpus that fits in one shard is embedded whole, so its feature cache entry is the usual one.
    ``model_version`` names the version in the folder (default ``model.version``).
    """
    writer = EmbeddingWriter(directory, model_version or model.version, dtypes, regions, meta=dict(meta or {}, shard_notes=shard_notes),
                             resume=True)
    check_resumable(writer, corpus, shard_notes, directory)
    starts = list(range(0, len(corpus), shard_notes))
    for start in starts[writer.done:]:
        writer.write(model.embed_corpus(shard_corpus(corpus, start, shard_notes), batch_size=batch_size,
                                        progress=progress))
    return writer.close()


def check_resumable(writer: EmbeddingWriter, corpus, shard_notes: int, directory) -> None:
    """Refuse to resume a folder whose shards were cut differently or hold other notes."""
    if not writer.done:
        return
    n_shards = -(-len(corpus) // shard_notes)
    if writer.shards.manifest["meta"]["meta"].get("shard_notes") != shard_notes or writer.done > n_shards:
        raise ValueError(f"{directory}: the interrupted write used another --shard-notes; write to a new folder")
    written = [nid for s in writer.shards.manifest["shards"] for nid in _shard_ids(directory, s["name"])]
    if written != [n.note_id for n in corpus.notes[: len(written)]]:
        raise ValueError(f"{directory}: the shards there hold other notes than this corpus; write to a new folder")


def shard_corpus(corpus, start: int, shard_notes: int):
    """The notes of the shard that starts at note ``start`` (the corpus itself when it is one shard)."""
    notes = corpus.notes[start:start + shard_notes]
    return corpus if len(notes) == len(corpus) else Corpus(corpus.root, notes, name=corpus.name)


def _shard_ids(directory: str | Path, shard: str) -> list[str]:
    return json.loads((Path(directory) / shard / "ids.json").read_text())

"""``Retriever``: every index of one embedding pass, one ``search`` call, add/remove, save/load.

One retriever holds the full-dim vectors of every granularity (``note``, ``text``, ``image``,
``region``) of one model version. The table at a lower Matryoshka dim is the truncated,
re-normalised prefix of the full-dim table (never re-encoded) and is built on first use; ANN
indexes likewise (``build`` makes them eagerly). Notes live in slots; ``remove`` marks a slot dead
(a tombstone every strategy filters, so HNSW and multi-vector indexes, which cannot delete, never
return it), ``add`` appends a slot to every table and index at once. ``compact()`` rebuilds
without the dead slots.

Memory-mapped versions: when the embeddings are memory maps (``NoteEmbeddings.load`` of a
sharded folder) or the retriever is ``load``-ed, the full-dim tables read the mapped file and are
never copied: ``exact`` at full dim scans it in blocks, ``adaptive`` and the exclusion of
duplicates read only the shortlisted rows. Lower-dim tables up to ``RESIDENT_DIM`` are built in
RAM by streaming over the blocks (float32, dim*4 bytes per row: the cheap shortlist pass);
wider prefixes read the mapped rows too. Multi-vector rows that are not stored sorted by owner
are read through an order index (8 bytes per row). Appended notes live in RAM beside the map;
``compact()`` gathers the live rows into RAM (a full copy), ``save`` streams.

    r = Retriever(embeddings)
    r.search("note-42", k=10, dim=64)                       # note -> neighbours, cheap pass
    r.search(query, strategy="adaptive")                    # 64-d shortlist, full-dim re-rank
    r.search(query, granularity="region", strategy="local") # fine-grained late interaction

Milvus (``IndexConfig(kind="milvus", uri=...)``, ``uninote.index.milvus``): every index is a
Milvus collection, one per (model version, granularity, dim), opened (model version checked) or
built from the local tables on first use; ``build`` (re)builds them, swapping each in by alias.
``image``/``region`` collections hold one row per vector with the note id as a field, searched by
grouping on it (one max per note per query vector, aggregated into the same late-interaction
score). ``exact`` searches a FLAT collection (a collection of another kind leaves ``exact`` to the
local scan, the reference), ``ann`` and ``local`` the collection whatever its kind, ``adaptive``
takes its shortlist from the ``shortlist_dim`` collection and re-ranks it from the local tables,
``global+local`` its global shortlist likewise. ``add`` and ``remove`` write through to every
existing collection of the version (all of a note's rows). The local tables still answer the
re-rank and duplicate exclusion. ``close()`` closes the Milvus client.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from uninote import MATRYOSHKA_DIMS
from uninote.embeddings import GRANULARITIES, NoteEmbeddings, QueryEmbedding, l2_normalize, truncate
from uninote.errors import UniNoteError
from uninote.index import persist, strategies
from uninote.index import milvus as milvus_store
from uninote.index import milvus_search as milvus_side
from uninote.index.ann import IndexConfig, build_ann, build_ann_streaming, choose_kind, index_kind
from uninote.index.vectors import VectorTable

DUPLICATE_SIM = 1 - 1e-4  # full-dim similarity at which a candidate counts as the query itself (float16
# storage moves a unit row's self-similarity by ~1e-5, so 1 - 1e-6 let stored duplicates through)


class UnknownNoteError(UniNoteError, KeyError):
    """A note id that is not (or no longer) in the index."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Hit:
    note_id: str
    score: float
    rank: int  # 1-based


def matryoshka_dims(full_dim: int) -> list[int]:
    """The ``MATRYOSHKA_DIMS`` below ``full_dim``, and the full dim."""
    return sorted({d for d in MATRYOSHKA_DIMS if d < full_dim} | {full_dim})


def on_disk(a) -> bool:
    """True for a memory map or a ``ShardedArray`` (rows read on use), False for an in-RAM array."""
    return isinstance(a, np.memmap) or hasattr(a, "parts")


class Retriever:
    """Search the notes of one embedding pass at any dim, granularity and strategy."""

    RESIDENT_DIM = 128  # mapped versions: lower-dim tables up to this dim are held in RAM

    def __init__(self, embeddings: NoteEmbeddings, config: IndexConfig | None = None, *,
                 shortlist: int = 200, shortlist_dim: int = 64, local_granularity: str = "region",
                 local_weight: float = 1.0):
        e = embeddings
        mapped = on_disk(e.note)
        table = VectorTable.mapped if mapped else VectorTable
        tables = {"note": table(e.note, None, len(e)), "text": table(e.text, None, len(e))}
        region_image = np.zeros(0, np.int64)
        for g, (vecs, owner) in (("image", (e.image, e.image_owner)), ("region", (e.region, e.region_owner))):
            order = None if np.all(owner[1:] >= owner[:-1]) else np.argsort(owner, kind="stable")
            if mapped and on_disk(vecs):  # read through the order, normalised on read: no copy
                tables[g] = VectorTable.mapped(vecs, owner if order is None else owner[order], len(e),
                                               order=order, normalize=True)
            else:
                rows = vecs if order is None else vecs[order]
                tables[g] = VectorTable(l2_normalize(rows) if len(vecs) else vecs,
                                        owner if order is None else owner[order], len(e))
            if g == "region":
                region_image = e.region_image if order is None else e.region_image[order]
        self._init(list(e.note_ids), np.ones(len(e), bool), tables, region_image, e.model_version,
                   config, shortlist, shortlist_dim, local_granularity, local_weight)

    def _init(self, note_ids, alive, tables, region_image, model_version, config, shortlist,
              shortlist_dim, local_granularity, local_weight):
        if local_granularity not in strategies.MULTI:
            raise ValueError(f"local_granularity must be one of {strategies.MULTI}")
        self.config = (config or IndexConfig()).validate()
        self.model_version = model_version
        self.note_ids = note_ids  # per slot, dead slots included
        self.alive = alive
        self.dead_slots = np.flatnonzero(~alive)
        self._slot = {nid: i for i, nid in enumerate(note_ids) if alive[i]}
        self._region_image = np.asarray(region_image, np.int64)
        self.full_dim = tables["note"].dim
        self._tables = {(g, self.full_dim): t for g, t in tables.items()}
        self._ann: dict[tuple[str, int], object] = {}
        self.shortlist, self.shortlist_dim = shortlist, shortlist_dim
        self.local_granularity, self.local_weight = local_granularity, local_weight
        self._milvus = None  # pymilvus is imported only when Milvus is asked for
        if self.config.kind == "milvus":
            self._milvus = milvus_store.MilvusIndex(self.config.uri, model_version, self.config.collection,
                                                   self.config.milvus_timeout)

    @property
    def milvus(self):
        """The ``MilvusIndex`` of this retriever (``kind="milvus"``), else None."""
        return self._milvus

    def close(self) -> None:
        """Close the Milvus client, if any (a no-op for in-process indexes)."""
        if self._milvus is not None:
            self._milvus.close()

    def use_milvus(self, uri: str, collection: str = "") -> "Retriever":
        """Serve the indexes from Milvus at ``uri`` from now on (e.g. a loaded folder
        in an app given ``UNINOTE_INDEX_URI``); collections missing there are built on first use."""
        from dataclasses import replace

        config = replace(self.config, kind="milvus", uri=uri, collection=collection).validate()
        milvus = milvus_store.MilvusIndex(uri, self.model_version, collection, config.milvus_timeout)
        self.close()
        self.config, self._milvus = config, milvus
        return self

    # --- tables and indexes ---------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, note_id: str) -> bool:
        return note_id in self._slot

    def table(self, granularity: str, dim: int) -> VectorTable:
        """The exact table at (granularity, dim), truncated from full dim on first use."""
        if granularity not in GRANULARITIES:
            raise ValueError(f"unknown granularity {granularity!r}; expected one of {GRANULARITIES}")
        if not 1 <= dim <= self.full_dim:
            raise ValueError(f"dim {dim} out of range 1..{self.full_dim}")
        key = (granularity, dim)
        if key not in self._tables:
            full = self._tables[(granularity, self.full_dim)]
            if full.is_mapped and dim > self.RESIDENT_DIM:
                self._tables[key] = full.prefix(dim)
            else:  # streamed block by block from a mapped table
                self._tables[key] = VectorTable(full.truncated(dim), full.owner, full.n_slots)
        return self._tables[key]

    def set_table(self, granularity: str, dim: int, vectors: np.ndarray) -> None:
        """Install the (granularity, dim) table from a saved copy of ``table(granularity, dim).vectors``
        (kept beside a big version by its server: loading 4*dim bytes per note is cheaper than
        streaming the full-dim map). One-vector granularities below full dim, before any add or
        remove; ``ValueError`` when the shape does not fit."""
        full = self._tables[(granularity, self.full_dim)]
        if full.multi or not 1 <= dim < self.full_dim or len(self.note_ids) != len(full) \
                or tuple(vectors.shape) != (len(full), dim):
            raise ValueError(f"a {tuple(vectors.shape)} table does not fit {granularity} at dim {dim} "
                             f"({len(full)} rows of {self.full_dim})")
        self._tables[(granularity, dim)] = VectorTable(vectors, None, full.n_slots)

    def kind_for(self, granularity: str) -> str:
        return choose_kind(len(self._tables[(granularity, self.full_dim)]), self.config)

    def ann_index(self, granularity: str, dim: int, build: bool = True):
        """The faiss index at (granularity, dim), or None when its kind is ``flat``."""
        key = (granularity, dim)
        if key not in self._ann and build:
            table, kind = self.table(granularity, dim), self.kind_for(granularity)
            self._ann[key] = build_ann_streaming(table, kind, self.config) if table.is_mapped else \
                build_ann(table.vectors, kind, self.config)
        return self._ann.get(key)

    def build(self, dims: Sequence[int] | None = None, granularities: Sequence[str] = GRANULARITIES) -> None:
        """Build every table and index now (default: all Matryoshka dims, all granularities).
        With Milvus, the collections are rebuilt from the local tables and swapped in."""
        for g in granularities:
            if len(self._tables[(g, self.full_dim)]) == 0:
                continue
            for d in dims or matryoshka_dims(self.full_dim):
                self.table(g, d)
                if self._milvus is not None:
                    self.build_collection(g, d)
                else:
                    self.ann_index(g, d)

    # --- Milvus (uninote/index/milvus.py: the client; milvus_search.py: the searches) ---------
    def build_collection(self, granularity: str, dim: int) -> int:
        """(Re)build the Milvus collection at (granularity, dim) from the local table; its rows."""
        return milvus_side.build_collection(self, granularity, dim)

    def collection_kind(self, granularity: str, dim: int) -> str | None:
        """The kind of the Milvus collection at (granularity, dim), opened (model version checked)
        or built on first use; None when this retriever does not search Milvus there."""
        return milvus_side.collection_kind(self, granularity, dim)

    def milvus_search(self, query: np.ndarray, granularity: str, dim: int, want: int, exact: bool = False):
        """(slots, scores) of the best ``want`` live notes from the Milvus collection at
        (granularity, dim), or None where Milvus is not searched (not configured, a multi-vector
        granularity without vectors, or ``exact`` on a collection that is not FLAT). ``query`` is
        full-dim (several rows: late interaction, as ``scoring.maxsim_scores``)."""
        return milvus_side.search(self, query, granularity, dim, want, exact)

    # --- queries --------------------------------------------------------------------------------
    def slot(self, note_id: str) -> int:
        try:
            return self._slot[note_id]
        except KeyError:
            raise UnknownNoteError(f"note {note_id!r} is not in the index (never added or removed)") from None

    def query_embedding(self, note_id: str) -> QueryEmbedding:
        """Everything stored for a note, as a full-dim query."""
        s = self.slot(note_id)
        full = {g: self._tables[(g, self.full_dim)] for g in GRANULARITIES}
        img, reg = full["image"].slot_rows(s), full["region"].slot_rows(s)
        return QueryEmbedding(
            note=full["note"].read(np.array([s]))[0], text=full["text"].read(np.array([s]))[0],
            images=full["image"].read(img) if len(img) else None,
            regions=full["region"].read(reg) if len(reg) else None,
            region_image=self._region_image[reg].copy() if len(reg) else None)

    def search(self, query: QueryEmbedding | str, k: int = 10, dim: int | None = None,
               granularity: str = "note", strategy: str = "exact", modality: str = "note",
               exclude_self: bool = True) -> list[Hit]:
        """The k best notes for a query (a ``QueryEmbedding`` or a note id in the index).

        ``dim`` (default full) is the Matryoshka dim searched (``adaptive``: the re-rank dim).
        ``exclude_self`` drops the query note and its exact duplicates (full-dim similarity
        >= 1 - 1e-4 at the searched granularity); pass False to keep them (content auditing).
        """
        if strategy not in strategies.STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; expected one of {strategies.STRATEGIES}")
        dim = self.full_dim if dim is None else int(dim)
        self_slot = None
        if isinstance(query, str):
            self_slot = self.slot(query)
            query = self.query_embedding(query)
        run, dedup_gran, dedup_query = self._plan(query, granularity, strategy, modality, dim)
        want = k + (8 if exclude_self else 0)
        while True:
            slots, scores = run(want)
            keep = np.ones(len(slots), bool)
            if exclude_self and len(slots):
                if self_slot is not None:
                    keep &= slots != self_slot
                full = self.table(dedup_gran, self.full_dim).score_slots(dedup_query, slots)
                keep &= ~(full >= DUPLICATE_SIM)
            slots, scores = slots[keep], scores[keep]
            exhausted = want >= len(self) + len(self.dead_slots)
            if len(slots) >= k or exhausted:
                break
            want *= 2
        return [Hit(self.note_ids[s], float(v), i + 1) for i, (s, v) in enumerate(zip(slots[:k], scores[:k]))]

    def _query_vectors(self, query: QueryEmbedding, modality: str, granularity: str) -> np.ndarray:
        q = query.vectors(modality, granularity)
        if q is None:
            raise UniNoteError(f"a {modality} query has no vectors for the {granularity!r} index "
                               f"(e.g. a text-only query cannot search image or region indexes)")
        if q.shape[-1] != self.full_dim:
            raise UniNoteError(f"query vectors have dim {q.shape[-1]}; this index expects full-dim "
                               f"{self.full_dim} vectors from model {self.model_version!r}")
        return l2_normalize(q)

    def indexes_for(self, granularity: str, strategy: str) -> tuple[str, ...]:
        """The granularities a search reads: ``(granularity,)``; ``local`` reads one multi-vector
        index (``local_granularity`` when asked for note/text); ``global+local`` reads
        ``(global, local)``, the global one note/text (``note`` when asked for image/region)."""
        if strategy not in ("local", "global+local"):
            return (granularity,)
        local_g = granularity if granularity in strategies.MULTI else self.local_granularity
        if strategy == "local":
            return (local_g,)
        return (granularity if granularity in strategies.SINGLE else "note", local_g)

    def _plan(self, query, granularity, strategy, modality, dim):
        """(run(want), dedup granularity, dedup query vectors) for one search."""
        if strategy in ("local", "global+local"):
            if strategy == "local":
                (local_g,) = self.indexes_for(granularity, strategy)
                q = self._query_vectors(query, modality, local_g)
                return (lambda want: strategies.local(self, q, local_g, dim, want)), local_g, q
            global_g, local_g = self.indexes_for(granularity, strategy)
            qg = self._query_vectors(query, modality, global_g)
            ql = query.vectors(modality, local_g)
            ql = None if ql is None else l2_normalize(ql)
            run = lambda want: strategies.global_local(self, qg, ql, global_g, local_g, dim, want)  # noqa: E731
            return run, global_g, qg
        q = self._query_vectors(query, modality, granularity)
        fn = {"exact": strategies.exact, "ann": strategies.ann, "adaptive": strategies.adaptive}[strategy]
        return (lambda want: fn(self, q, granularity, dim, want)), granularity, q

    # --- updates --------------------------------------------------------------------------------
    def add(self, note_id: str, parts: QueryEmbedding, replace: bool = False) -> None:
        """Make a new note searchable at once in every table and index (full-dim ``parts``)."""
        if parts.note is None or parts.text is None:
            raise UniNoteError(f"note {note_id!r}: adding needs its fused note and text vectors")
        if note_id in self._slot:
            if not replace:
                raise UniNoteError(f"note {note_id!r} is already indexed; pass replace=True to update it")
            self.remove(note_id)
        d = self.full_dim
        new = {"note": parts.note, "text": parts.text, "image": parts.images, "region": parts.regions}
        new = {g: l2_normalize(np.zeros((0, d)) if v is None else np.atleast_2d(v)) for g, v in new.items()}
        for g, v in new.items():
            if v.shape[1] != d:
                raise UniNoteError(f"note {note_id!r}: {g} vectors have dim {v.shape[1]}, index expects {d}")
        slot = len(self.note_ids)
        for (g, dim), table in self._tables.items():
            vecs = new[g] if dim == d else truncate(new[g], dim)
            table.append(vecs, slot)
            index = self._ann.get((g, dim))
            if index is not None and len(vecs):
                index.add(np.ascontiguousarray(vecs, dtype=np.float32))
        n_reg = len(new["region"])
        ri = np.zeros(n_reg, np.int64) if parts.region_image is None else np.asarray(parts.region_image, np.int64)
        self._region_image = np.concatenate([self._region_image, ri[:n_reg]])
        self.note_ids.append(note_id)
        self.alive = np.append(self.alive, True)
        self._slot[note_id] = slot
        if self._milvus is not None:
            keys = self._milvus.collections(matryoshka_dims(self.full_dim))
            self._milvus.upsert(note_id, {(g, dim): truncate(new[g], dim) for g, dim in keys})

    def remove(self, note_id: str) -> None:
        """Never return this note again (tombstone; ``compact()`` drops its vectors)."""
        s = self.slot(note_id)
        if self._milvus is not None:  # first, so a failed delete leaves both sides as they were
            self._milvus.delete(note_id, list(self._milvus.collections(matryoshka_dims(self.full_dim))))
        self.alive[s] = False
        self.dead_slots = np.flatnonzero(~self.alive)
        del self._slot[note_id]

    def to_embeddings(self) -> NoteEmbeddings:
        """The live notes as full-dim ``NoteEmbeddings`` in RAM (slots renumbered; a mapped
        retriever's live rows are gathered from the map: a full copy)."""
        live = np.flatnonzero(self.alive)
        remap = np.full(len(self.alive), -1, np.int64)
        remap[live] = np.arange(len(live))
        t = {g: self._tables[(g, self.full_dim)] for g in GRANULARITIES}
        parts = {}
        for g in ("image", "region"):
            keep = self.alive[t[g].owner]
            parts[g] = (t[g].read(np.flatnonzero(keep)), remap[t[g].owner[keep]], keep)
        return NoteEmbeddings(
            [self.note_ids[s] for s in live], t["note"].read(live), t["text"].read(live),
            parts["image"][0], parts["image"][1], parts["region"][0], parts["region"][1],
            self._region_image[parts["region"][2]], self.model_version)

    def compact(self) -> "Retriever":
        """A new retriever without dead slots, with the same indexes built."""
        fresh = Retriever(self.to_embeddings(), self.config, shortlist=self.shortlist,
                          shortlist_dim=self.shortlist_dim, local_granularity=self.local_granularity,
                          local_weight=self.local_weight)
        for g, d in self._ann:
            fresh.ann_index(g, d)
        return fresh

    def rebuilt(self, embeddings: NoteEmbeddings) -> "Retriever":
        """A retriever over ``embeddings`` (e.g. this one's notes and more) with this one's settings
        and the same lower-dim tables and ANN indexes built, so its first searches cost what this
        one's do."""
        fresh = Retriever(embeddings, self.config, shortlist=self.shortlist, shortlist_dim=self.shortlist_dim,
                          local_granularity=self.local_granularity, local_weight=self.local_weight)
        for g, d in list(self._tables):
            fresh.table(g, d)
        for g, d in list(self._ann):
            fresh.ann_index(g, d)
        return fresh

    # --- persistence ----------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write the manifest, vectors and every built ANN index to ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        full = {g: self._tables[(g, self.full_dim)] for g in GRANULARITIES}
        whole = lambda a: (a.dtype.name, a.shape, [a])  # noqa: E731
        tensors = {g: (t.storage_dtype.name, t.shape, (b for _, b in t.blocks())) for g, t in full.items()}
        tensors.update(image_owner=whole(full["image"].owner), region_owner=whole(full["region"].owner),
                       region_image=whole(self._region_image), alive=whole(self.alive.astype(np.uint8)))
        vectors = persist.write_vectors(out / "vectors.safetensors", tensors)
        indexes = []
        for (g, d), table in sorted(self._tables.items()):
            if len(table) == 0:
                continue
            entry = {"granularity": g, "dim": d, "kind": "flat", "count": len(table),
                     "vectors_checksum": persist.vectors_checksum(self._as_loaded(full[g], d), table.owner)}
            index = self._ann.get((g, d))
            if index is not None:
                entry["kind"] = index_kind(index)
                entry.update(persist.write_faiss(index, out / f"{g}-d{d}-{entry['kind']}.faiss"))
            indexes.append(entry)
        manifest = {
            "format": persist.FORMAT, "model_version": self.model_version, "full_dim": self.full_dim,
            "slots": len(self.note_ids), "live_notes": len(self), "config": asdict(self.config),
            "search": {"shortlist": self.shortlist, "shortlist_dim": self.shortlist_dim,
                       "local_granularity": self.local_granularity, "local_weight": self.local_weight},
            "ids": persist.write_json(out / "ids.json", self.note_ids),
            "vectors": vectors,
            "indexes": indexes,
        }
        (out / persist.MANIFEST).write_text(json_dump(manifest))
        return out

    def _as_loaded(self, full: VectorTable, dim: int):
        """Row blocks of the (granularity, dim) table a loaded copy derives from ``full`` as saved
        (stored in ``full``'s storage dtype, then truncated): what its checksum is taken of."""
        for _, block in full.blocks():
            block = block.astype(full.storage_dtype).astype(np.float32)
            yield block if dim == self.full_dim else truncate(block, dim)

    @classmethod
    def load(cls, directory: str | Path, model_version: str | None = None,
             verify: bool | None = None) -> "Retriever":
        """Open a saved retriever, its vectors memory-mapped; ``ModelMismatchError`` if built by
        another model version. ``verify``: check the vectors file's sha256 and every index's
        vectors checksum (default: when the vectors file is at most ``persist.VERIFY_MAX_BYTES``;
        sizes and counts are always checked)."""
        d = Path(directory)
        m = persist.read_manifest(d, model_version)
        try:
            ids = json.loads(persist.verify_file(d, m["ids"]).read_text())
            if verify is None:
                verify = m["vectors"]["bytes"] <= persist.VERIFY_MAX_BYTES
            t = persist.map_vectors(d, m["vectors"], verify)
            alive = np.asarray(t["alive"]).astype(bool)
            tables = {g: VectorTable.mapped(t[g], None, len(ids)) for g in ("note", "text")}
            tables.update({g: VectorTable.mapped(t[g], np.asarray(t[f"{g}_owner"]), len(ids))
                           for g in ("image", "region")})
            config, search = IndexConfig(**m["config"]), dict(m["search"])
            if len(alive) != len(ids):
                raise ValueError(f"{len(alive)} alive flags for {len(ids)} note ids")
        except (KeyError, ValueError, TypeError) as exc:
            if isinstance(exc, UniNoteError):
                raise
            raise persist.CorruptIndexError(f"{d}: inconsistent index files ({exc}); rebuild it") from None
        self = cls.__new__(cls)
        self._init(ids, alive, tables, np.asarray(t["region_image"]), m["model_version"], config, **search)
        for entry in m["indexes"]:
            g, dim = entry["granularity"], entry["dim"]
            if entry["kind"] == "flat" and not verify:
                continue  # a flat index is its table, derived on first use
            table = self.table(g, dim)
            if len(table) != entry["count"] or (verify and persist.vectors_checksum(
                    (b for _, b in table.blocks()), table.owner) != entry["vectors_checksum"]):
                raise persist.CorruptIndexError(f"{d}: {g} index at dim {dim} does not match the stored vectors")
            if entry["kind"] != "flat":
                index = persist.read_faiss(d, entry)
                if index.ntotal != len(table) or index.d != dim:
                    raise persist.CorruptIndexError(f"{d / entry['file']}: holds {index.ntotal}x{index.d} "
                                                    f"vectors, expected {len(table)}x{dim}")
                self._ann[(g, dim)] = index
        return self


def json_dump(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=1)

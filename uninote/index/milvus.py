"""The online index in Milvus: one collection per (model version, granularity, dim), through ``pymilvus``.

``IndexConfig(kind="milvus", uri=...)`` makes a ``Retriever`` search every granularity (``note``,
``text``, ``image``, ``region``) in a Milvus deployment (``http://host:19530``) or in Milvus Lite
(a local file URI ending in ``.db``, the embedded Milvus with the same client API). The retriever
keeps its local tables (the memory-mapped shards): they answer the re-rank of ``adaptive`` and of
approximate multi-vector searches, and the exclusion of the query's duplicates.

Collections. ``<base>_<granularity>_d<dim>``, where ``<base>`` is ``IndexConfig.collection`` or,
by default, ``uninote_<version tag>`` (the model version made safe for a Milvus name, plus 8 hex
digits of its sha1): one set per model version, so versions live side by side and switching the
served version switches collections. In a ``note``/``text`` collection each row is one live note:
the primary key ``id`` (the note id, VARCHAR) and ``vec``, the re-normalised ``dim`` prefix of its
full-dim vector (FLOAT_VECTOR, inner product = cosine). In an ``image``/``region`` collection each
row is one vector of a live note: ``id`` is ``"<note id>#<k>"`` (its k-th vector, in table order),
the scalar ``note_id`` (VARCHAR) names the note, and ``vec`` as above. The collection properties
record ``uninote.model_version`` and ``uninote.kind``; opening a collection written by another
model version raises ``ModelMismatchError`` (as the FAISS manifest does).

Multi-vector searches group by ``note_id`` (Milvus grouping search, one hit per note) and are
aggregated as in-process; ``uninote.index.milvus_search`` says how and when the result is exact.

Index kinds follow ``IndexConfig.milvus_kind`` (default ``auto``: by vector count like the FAISS
indexes, ``flat`` up to ``flat_max``, then ``hnsw``, then ``ivfpq``): ``flat`` is Milvus FLAT (exact),
``hnsw`` HNSW with the config's M / efConstruction / efSearch, ``ivfpq`` IVF_PQ (not in Milvus Lite).

The retriever's side (building its collections from its local tables, the search strategies'
use of them, the multi-vector aggregation) is ``uninote.index.milvus_search``.

Writes never leave a half-built collection in service: a build fills a fresh physical collection
``<name>__b<hex time>``, flushes it, builds its index and loads it, and only then points the alias
``<name>`` at it (``create_alias`` or ``alter_alias``, atomic on the server) and drops the one it
replaced. A failed build drops its physical collection; searches read the alias only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from typing import Iterable, Iterator

import numpy as np

from uninote.errors import ConfigError, ModelMismatchError, UniNoteError
from uninote.index.ann import _pq_m, ivf_nlist

log = logging.getLogger("uninote.index.milvus")

SINGLE = ("note", "text")  # one vector per note: one row per note, the note id as primary key
MULTI = ("image", "region")  # several vectors per note: one row per vector, "<note id>#<k>", note_id field
GRANULARITIES = SINGLE + MULTI
VERSION_KEY, KIND_KEY = "uninote.model_version", "uninote.kind"
MAX_LIMIT = 16_384  # Milvus caps topk here
INSERT_ROWS = 2_048  # rows per insert call (2048 x 768 x 4 bytes = 6 MB, under the gRPC message cap)
MAX_ID_LENGTH = 512
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,199}$")
_MILVUS_TYPES = {"flat": "FLAT", "hnsw": "HNSW", "ivfpq": "IVF_PQ"}


class MilvusUnavailableError(UniNoteError, ConnectionError):
    """No Milvus answers at the configured URI (or a Milvus Lite file cannot be opened)."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def collection_base(model_version: str, collection: str = "") -> str:
    """The name prefix of a version's collections: ``collection`` if given, else one derived
    from the model version (safe characters plus a short hash, so no two versions share one)."""
    if collection:
        if not _NAME.match(collection):
            raise ConfigError(f"Milvus collection name {collection!r}: use letters, digits and '_', "
                              "starting with a letter or '_' (at most 200 characters)")
        return collection
    tag = re.sub(r"[^A-Za-z0-9]+", "_", str(model_version)).strip("_")[:48]
    digest = hashlib.sha1(str(model_version).encode()).hexdigest()[:8]
    return f"uninote_{tag}_{digest}" if tag else f"uninote_{digest}"


def connect(uri: str, timeout: float = 5.0):
    """A ``pymilvus.MilvusClient`` that has answered one call; ``MilvusUnavailableError`` naming
    the URI within about ``timeout`` seconds otherwise."""
    try:
        from pymilvus import MilvusClient
    except ImportError:  # pragma: no cover - the pinned requirement installs it
        raise ConfigError("IndexConfig(kind='milvus') needs pymilvus (pip install -r requirements.txt)") from None
    try:
        client = MilvusClient(uri=uri, timeout=timeout)
        client.list_collections(timeout=timeout)
    except Exception as exc:  # any failure to reach it: one line naming the URI
        raise MilvusUnavailableError(f"no Milvus answers at {uri!r} within {timeout:g}s "
                                     f"({_first_line(exc)})") from None
    return client


class MilvusIndex:
    """The Milvus collections of one model version: open, build (swap by alias), search, upsert,
    delete. ``pymilvus`` is imported here only, when a retriever is configured for Milvus."""

    def __init__(self, uri: str, model_version: str, collection: str = "", timeout: float = 5.0):
        self.uri, self.model_version = uri, model_version
        self.base = collection_base(model_version, collection)
        self._kinds: dict[tuple[str, int], str] = {}  # opened collections -> their kind
        self.lock = threading.RLock()  # one first-use build per collection in this process
        self.client = connect(uri, timeout)

    # --- names ------------------------------------------------------------------------------------
    def name(self, granularity: str, dim: int) -> str:
        if granularity not in GRANULARITIES:
            raise ValueError(f"Milvus holds the granularities {GRANULARITIES}, not {granularity!r}")
        return f"{self.base}_{granularity}_d{int(dim)}"

    def exists(self, granularity: str, dim: int) -> bool:
        return bool(self.client.has_collection(self.name(granularity, dim)))

    # --- open / build -------------------------------------------------------------------------------
    def open(self, granularity: str, dim: int) -> str | None:
        """The kind of the (granularity, dim) collection after checking its model version; None
        when it does not exist yet."""
        key = (granularity, int(dim))
        if key in self._kinds:
            return self._kinds[key]
        name = self.name(granularity, dim)
        if not self.client.has_collection(name):
            return None
        props = self._properties(name)
        self._check_version(name, props)
        self._kinds[key] = props.get(KIND_KEY, "flat")
        self.client.load_collection(name)
        return self._kinds[key]

    def _properties(self, name: str) -> dict:
        return dict(self.client.describe_collection(name).get("properties") or {})

    def _check_version(self, name: str, props: dict) -> None:
        built_with = props.get(VERSION_KEY)
        if built_with != self.model_version:
            raise ModelMismatchError(
                f"Milvus collection {name!r} at {self.uri} was built with model version {built_with!r} "
                f"but the model in use is {self.model_version!r}; rebuild it with "
                f"`uninote index build --milvus {self.uri}` (or choose another --collection)")

    def build(self, granularity: str, dim: int, kind: str, rows: Iterable[tuple[list[str], np.ndarray]],
              config) -> int:
        """(Re)build the (granularity, dim) collection from ``rows`` (blocks of note ids, one per
        row, and their unit vectors at ``dim``; a multi-vector note's rows consecutive within a
        block, in table order) under a fresh physical name, then swap the alias onto it. Refuses
        (``ModelMismatchError``) to replace a collection of another model version. Returns the rows."""
        from pymilvus import DataType, MilvusClient

        if kind not in _MILVUS_TYPES:
            raise ConfigError(f"Milvus index kind {kind!r} unknown; expected one of {tuple(_MILVUS_TYPES)}")
        name, dim = self.name(granularity, dim), int(dim)
        c = self.client
        old = None
        if c.has_collection(name):
            self._check_version(name, self._properties(name))
            old = c.describe_collection(name).get("collection_name")
        for stale in c.list_collections():  # a crashed build's leftovers: never aliased, never read
            if stale.startswith(f"{name}__b") and stale != old:
                c.drop_collection(stale)
        physical = f"{name}__b{time.time_ns():x}"
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        multi = granularity in MULTI
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID_LENGTH + 12 * multi)
        if multi:
            schema.add_field("note_id", DataType.VARCHAR, max_length=MAX_ID_LENGTH)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=dim)
        n = 0
        try:
            c.create_collection(physical, schema=schema, consistency_level="Strong",
                                properties={VERSION_KEY: self.model_version, KIND_KEY: kind})
            for ids, vecs in rows:
                n += self._insert(physical, ids, vecs, multi)
            c.flush(physical)
            params = c.prepare_index_params()
            params.add_index(field_name="vec", index_type=_MILVUS_TYPES[kind], metric_type="IP",
                             params=_index_params(kind, n, dim, config))
            c.create_index(physical, params)
            c.load_collection(physical)
            if old is None:
                c.create_alias(physical, name)
            else:
                c.alter_alias(physical, name)
        except Exception as exc:
            try:
                c.drop_collection(physical)
            except Exception:  # the server went away: the unaliased leftover is dropped next build
                log.warning("could not drop the half-built Milvus collection %s", physical)
            if isinstance(exc, UniNoteError):
                raise
            if old is None and c.has_collection(name):  # another process built it first: serve that
                self._check_version(name, self._properties(name))
                return n
            raise UniNoteError(f"building Milvus collection {name!r} at {self.uri} failed "
                               f"({_first_line(exc)}); the collection in service is unchanged") from exc
        if old is not None and old != physical:
            c.drop_collection(old)
        self._kinds[(granularity, dim)] = kind
        return n

    def _insert(self, name: str, ids: list[str], vecs: np.ndarray, multi: bool = False) -> int:
        """Insert rows: ``ids`` are note ids, one per row (``multi``: a note's rows consecutive,
        numbered ``#0, #1, ...`` in the order given)."""
        vecs = np.ascontiguousarray(vecs, dtype=np.float32)
        for nid in set(ids):
            if len(nid.encode()) > MAX_ID_LENGTH:
                raise UniNoteError(f"note id {nid[:40]!r}... is longer than {MAX_ID_LENGTH} bytes (Milvus primary key)")
        if multi:
            ks = _rank_in_run(ids)
            rows = [{"id": f"{i}#{k}", "note_id": i, "vec": v} for i, k, v in zip(ids, ks, vecs)]
        else:
            rows = [{"id": i, "vec": v} for i, v in zip(ids, vecs)]
        for s in range(0, len(rows), INSERT_ROWS):
            self.client.insert(name, rows[s:s + INSERT_ROWS])
        return len(ids)

    # --- queries and updates ------------------------------------------------------------------------
    def search(self, granularity: str, dim: int, query: np.ndarray, limit: int, config) -> tuple[list[str], np.ndarray]:
        """(note ids, inner products) of the ``limit`` best rows for one query vector, best first."""
        name = self.name(granularity, dim)
        kind = self._kinds.get((granularity, int(dim)), "flat")
        limit = max(1, min(int(limit), MAX_LIMIT))
        params = {"metric_type": "IP", "params": _search_params(kind, limit, config)}
        try:
            res = self.client.search(name, data=[np.asarray(query, np.float32).tolist()], limit=limit,
                                     anns_field="vec", search_params=params, output_fields=["id"])
        except Exception as exc:  # dropped under us, server gone: say which collection where
            raise UniNoteError(f"Milvus search of collection {name!r} at {self.uri} failed "
                               f"({_first_line(exc)})") from None
        hits = res[0] if len(res) else []
        return [h["id"] for h in hits], np.array([h["distance"] for h in hits], np.float32)

    def search_groups(self, granularity: str, dim: int, queries: np.ndarray, limit: int, config,
                      among: list[str] | None = None) -> list[tuple[list[str], np.ndarray]]:
        """Grouping search of a multi-vector collection: for each query vector (one batched call),
        (note ids, max inner product over the note's rows) of its ``limit`` best notes, best first;
        ``among``: only those notes (a filter on ``note_id``)."""
        name = self.name(granularity, dim)
        kind = self._kinds.get((granularity, int(dim)), "flat")
        limit = max(1, min(int(limit), MAX_LIMIT))
        params = {"metric_type": "IP", "params": _search_params(kind, limit, config)}
        extra = {} if among is None else {"filter": f"note_id in {_literal(list(among))}"}
        try:
            res = self.client.search(name, data=np.asarray(queries, np.float32).tolist(), limit=limit,
                                     anns_field="vec", search_params=params, output_fields=["note_id"],
                                     group_by_field="note_id", **extra)
        except Exception as exc:
            raise UniNoteError(f"Milvus search of collection {name!r} at {self.uri} failed "
                               f"({_first_line(exc)})") from None
        return [([h["note_id"] for h in hits], np.array([h["distance"] for h in hits], np.float32))
                for hits in res]

    def collections(self, dims: Iterable[int]) -> Iterator[tuple[str, int]]:
        """The (granularity, dim) collections of this version that exist, among ``dims``."""
        for d in sorted({int(d) for d in dims} | {d for _, d in self._kinds}):
            for g in GRANULARITIES:
                if (g, d) in self._kinds or self.exists(g, d):
                    yield g, d

    def upsert(self, note_id: str, vectors: dict[tuple[str, int], np.ndarray]) -> None:
        """Write one note's rows into each given (granularity, dim) collection, replacing what it
        had there (``note``/``text``: one vector; ``image``/``region``: all its vectors, maybe none)."""
        for (g, d), vec in vectors.items():
            name, vec = self.name(g, d), np.atleast_2d(vec)
            self._delete_rows(g, name, note_id)
            if g in MULTI:
                if len(vec):
                    self._insert(name, [note_id] * len(vec), vec, multi=True)
            else:
                self._insert(name, [note_id], vec[:1])

    def delete(self, note_id: str, keys: Iterable[tuple[str, int]]) -> None:
        """Remove every row of the note from each (granularity, dim) collection."""
        for g, d in keys:
            self._delete_rows(g, self.name(g, d), note_id)

    def _delete_rows(self, granularity: str, name: str, note_id: str) -> None:
        if granularity in MULTI:
            self.client.delete(name, filter=f"note_id == {_literal(note_id)}")
        else:
            self.client.delete(name, ids=[note_id])

    def row_count(self, granularity: str, dim: int) -> int:
        name = self.name(granularity, dim)
        res = self.client.query(name, output_fields=["count(*)"])
        return int(res[0]["count(*)"])

    def drop(self, granularity: str, dim: int) -> None:
        """Drop the (granularity, dim) collection and its alias."""
        name = self.name(granularity, dim)
        if self.client.has_collection(name):
            physical = self.client.describe_collection(name).get("collection_name", name)
            if physical != name:
                self.client.drop_alias(name)
            self.client.drop_collection(physical)
        self._kinds.pop((granularity, int(dim)), None)

    def close(self) -> None:
        """Close the client (a Milvus Lite file's server process stops with its last client)."""
        client, self.client = getattr(self, "client", None), None
        if client is not None:
            client.close()


def _literal(value) -> str:
    """A string (or list of strings) as a Milvus filter literal: JSON's double-quoted escapes are
    the ones the Milvus expression parser reads."""
    return json.dumps(value, ensure_ascii=False)


def _rank_in_run(ids: list[str]) -> list[int]:
    """0, 1, 2, ... within each run of equal consecutive ids."""
    out, prev, k = [], None, 0
    for i in ids:
        k = k + 1 if i == prev else 0
        out.append(k)
        prev = i
    return out


def is_lite(uri: str) -> bool:
    """True for a Milvus Lite URI (a local file path ending in ``.db``)."""
    return str(uri).endswith(".db") and "://" not in str(uri)


def release_lite(uri: str) -> None:
    """Stop the in-process Milvus Lite server of a ``.db`` URI (its gRPC threads on 127.0.0.1);
    clients still open on it fail afterwards. Otherwise it stops at process exit."""
    if not is_lite(uri):
        return
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(str(uri))


def _index_params(kind: str, n: int, dim: int, config) -> dict:
    if kind == "hnsw":
        return {"M": config.hnsw_m, "efConstruction": config.ef_construction}
    if kind == "ivfpq":
        return {"nlist": ivf_nlist(max(n, 39), config), "m": _pq_m(dim, config), "nbits": 8}
    return {}


def _search_params(kind: str, limit: int, config) -> dict:
    if kind == "hnsw":
        return {"ef": max(config.ef_search, limit)}
    if kind == "ivfpq":
        return {"nprobe": config.ivf_nprobe}
    return {}

"""Past one machine: embed and i2i throughput without Ray, on a 1-node and on a 2-node local Ray
cluster, and the all-notes I2I table over synthetic notes at scale (``uninote bench --scale``).

``embed``: the catalogue's first ``--scale-notes`` notes embedded by the default model
architecture (real frozen backbones through ONNX Runtime, as a trained model runs; the heads'
weights do not change the cost) with ``--shard-notes`` notes per shard: once in this process
(``--threads`` threads), once on a local cluster of one node with that many CPUs, once on two
nodes of one CPU each (``--workers`` actors of one thread). Each run has a fresh feature cache
(with the ONNX exports made beforehand), so every run reads and encodes every photo.

``i2i``: the I2I table (exact, k, dim) of ``--scale-notes`` synthetic notes the same three ways.

``synthetic``: the I2I table of synthetic notes (``uninote.index.synthetic``, full dim = ``--dim``)
in this process: ``exact`` at each ``--synthetic`` size up to ``--exact-max`` notes, and
``ann``/``adaptive`` at every size; ``adaptive`` and ``exact`` above ``--exact-max`` are timed on
``--time-blocks`` query blocks and extrapolated (said in the table). Recall@k of every strategy
against exact on a seeded sample of ``--recall-sample`` notes.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from uninote.embedding_store import EmbeddingWriter
from uninote.embeddings import NoteEmbeddings, l2_normalize
from uninote.index.i2i import I2ISettings, IndexPart, merged_search, neighbours_of_block, part_bounds
from uninote.index.i2i_table import i2i_local, read_i2i
from uninote.index.synthetic import CHUNK, SyntheticSpec, iter_chunks


def synthetic_store(folder: Path, n: int, dim: int, seed: int = 0) -> Path:
    """Synthetic notes (note = text vectors, no photos) as embedding shards of ``CHUNK`` notes."""
    if (folder / "manifest.json").is_file() and json.loads((folder / "manifest.json").read_text())["complete"]:
        return folder
    spec = SyntheticSpec(n, full_dim=dim, seed=seed)
    writer = EmbeddingWriter(folder, f"synthetic-{n}-d{dim}-s{seed}", regions=False)
    empty, none = np.zeros((0, dim), np.float32), np.zeros(0, np.int64)
    for start, block in iter_chunks(spec, dim):
        ids = [f"s{i}" for i in range(start, start + len(block))]
        writer.write(NoteEmbeddings(ids, block, block, empty, none, empty, none, none, writer_version(writer)))
    return writer.close()


def writer_version(writer: EmbeddingWriter) -> str:
    return writer.shards.manifest["meta"]["model_version"]


@contextmanager
def cluster(work: Path, nodes: int, cpus_per_node: int, cache: Path):
    from uninote.cluster.local import LocalCluster

    c = LocalCluster(work, cpus_per_node=cpus_per_node, nodes=nodes, cache=cache).start()
    try:
        yield c
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        c.stop()


def _load() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3])


# --- embed ------------------------------------------------------------------------------------
def _fresh_cache(work: Path, name: str, onnx: Path) -> Path:
    cache = work / f"cache-{name}"
    shutil.rmtree(cache, ignore_errors=True)
    shutil.copytree(onnx, cache / "onnx")
    return cache


def bench_embed(work: Path, corpus_source: str, n: int, shard_notes: int, threads: int, workers: int) -> list[dict]:
    import torch

    from uninote.data import load_corpus
    from uninote.embedding_store import embed_to_disk
    from uninote.model import load_model
    from uninote.model.config import UniNoteConfig
    from uninote.model.uninote import UniNoteModel

    work.mkdir(parents=True, exist_ok=True)
    corpus = load_corpus(corpus_source, limit=n)
    model_dir = UniNoteModel(UniNoteConfig()).save_pretrained(work / "model")
    warm = work / "cache-warm"
    os.environ["UNINOTE_CACHE"] = str(warm)  # the ONNX exports, made once, outside every timing
    torch.set_num_threads(threads)
    from uninote.data.corpus import Corpus

    embed_to_disk(load_model(str(model_dir)), Corpus(corpus.root, corpus.notes[:4], name="warm"), work / "warm-emb",
                  progress=False)
    rows = []
    for name in ("no-ray", "ray-1-node", "ray-2-nodes"):
        cache, out = _fresh_cache(work, name, warm / "onnx"), work / f"emb-{name}"
        shutil.rmtree(out, ignore_errors=True)
        if name == "no-ray":
            os.environ["UNINOTE_CACHE"] = str(cache)
            start = time.perf_counter()
            embed_to_disk(load_model(str(model_dir)), corpus, out, shard_notes=shard_notes, progress=False)
            seconds, setup = time.perf_counter() - start, 0.0
        else:
            from uninote.cluster.embed import embed_on_cluster

            nodes = 1 if name == "ray-1-node" else 2
            with cluster(work / f"cluster-{name}", nodes, threads if nodes == 1 else 1, cache) as c:
                start = time.perf_counter()
                ran = embed_on_cluster(c.address, str(model_dir), corpus, out, workers=workers, threads=1,
                                       shard_notes=shard_notes)
                seconds = time.perf_counter() - start
                setup = seconds - ran["seconds"]
        rows.append({"job": "embed", "run": name, "notes": len(corpus), "seconds": seconds,
                     "notes_per_s": len(corpus) / seconds, "connect_s": setup, "load": _load()})
        print(rows[-1], flush=True)
    first = NoteEmbeddings.load(work / "emb-no-ray")
    for name in ("ray-1-node", "ray-2-nodes"):
        other = NoteEmbeddings.load(work / f"emb-{name}")
        diff = float(np.abs(np.asarray(first.note) - np.asarray(other.note)).max())
        assert first.note_ids == other.note_ids, name
        print(f"{name}: same note ids as no-ray, largest vector difference {diff:.2g}")
    return rows


# --- i2i through Ray --------------------------------------------------------------------------
def bench_i2i_ray(work: Path, n: int, dim: int, k: int, threads: int, workers: int) -> list[dict]:
    from threadpoolctl import threadpool_limits

    from uninote.cluster.i2i import i2i_on_cluster

    emb = synthetic_store(work / f"syn-{n}-d{dim}", n, dim)
    settings = I2ISettings(k=k, dim=dim, strategy="exact")
    rows = []
    for name in ("no-ray", "ray-1-node", "ray-2-nodes"):
        out = work / f"i2i-{name}-{n}"
        shutil.rmtree(out, ignore_errors=True)
        if name == "no-ray":
            with threadpool_limits(threads):
                start = time.perf_counter()
                i2i_local(emb, out, settings, progress=False)
                seconds = time.perf_counter() - start
        else:
            nodes = 1 if name == "ray-1-node" else 2
            with cluster(work / f"cluster-{name}", nodes, threads if nodes == 1 else 1, work / "cache") as c:
                start = time.perf_counter()
                i2i_on_cluster(c.address, emb, out, settings, workers=workers, threads=1, progress=False)
                seconds = time.perf_counter() - start
        rows.append({"job": "i2i", "run": name, "notes": n, "seconds": seconds, "notes_per_s": n / seconds,
                     "load": _load()})
        print(rows[-1], flush=True)
    base = read_i2i(work / f"i2i-no-ray-{n}")
    for name in ("ray-1-node", "ray-2-nodes"):
        other = read_i2i(work / f"i2i-{name}-{n}")
        same = all(list(a) == list(b) for a, b in zip(base.neighbour_ids, other.neighbour_ids))
        print(f"{name}: lists equal to no-ray: {same}")
    return rows


# --- synthetic scale --------------------------------------------------------------------------
def _sample(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(n, min(size, n), replace=False))


def _lists_for(parts, settings: I2ISettings, emb: NoteEmbeddings, rows: np.ndarray) -> list[np.ndarray]:
    search, out = merged_search(parts, settings), []
    for a in range(0, len(rows), settings.query_block):
        r = rows[a:a + settings.query_block]
        q = l2_normalize(np.asarray(emb.note[r], np.float32))
        out += [slots for slots, _ in neighbours_of_block(search, q, r, settings, len(emb))]
    return out


def _lists_of_table(folder: Path, emb: NoteEmbeddings, rows: np.ndarray) -> list[np.ndarray]:
    table = read_i2i(folder)
    return [np.array([emb.row(i) for i in table.neighbour_ids[r]]) for r in rows]


def bench_synthetic(work: Path, sizes: list[int], dim: int, k: int, exact_max: int, shortlist: int,
                    shortlist_dim: int, ef_search: int, time_blocks: int, recall_sample: int) -> list[dict]:
    rows = []
    for n in sizes:
        folder = synthetic_store(work / f"syn-{n}-d{dim}", n, dim)
        emb = NoteEmbeddings.load(folder)
        sample = _sample(n, recall_sample)
        exact = I2ISettings(k=k, dim=dim, strategy="exact")
        exact_parts = [IndexPart(emb.note, a, b, exact, n) for a, b in part_bounds(emb.note)]
        truth = _lists_for(exact_parts, exact, emb, sample)
        strategies = [("exact", exact),
                      ("adaptive", I2ISettings(k=k, dim=dim, strategy="adaptive", shortlist=shortlist,
                                               shortlist_dim=shortlist_dim)),
                      ("ann", I2ISettings(k=k, dim=dim, strategy="ann",
                                          index={"kind": "hnsw", "ef_search": ef_search}))]
        for name, settings in strategies:
            if name == "ann" or n <= exact_max:
                out = work / f"i2i-{name}-{n}"
                shutil.rmtree(out, ignore_errors=True)
                ran = i2i_local(folder, out, settings, progress=False)
                seconds, build, how = ran["total_s"], ran["build_s"], "whole table"
                got = _lists_of_table(out, emb, sample)
            else:
                start = time.perf_counter()
                parts = exact_parts if name == "exact" else [IndexPart(emb.note, a, b, settings, n)
                                                              for a, b in part_bounds(emb.note)]
                build = time.perf_counter() - start
                timed = np.arange(min(n, time_blocks * settings.query_block))
                start = time.perf_counter()
                _lists_for(parts, settings, emb, timed)
                seconds = build + (time.perf_counter() - start) / len(timed) * n
                how = f"{len(timed):,} queries timed, extrapolated to all"
                got = _lists_for(parts, settings, emb, sample)
            recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(got, truth)]))
            rows.append({"job": "synthetic", "notes": n, "dim": dim, "strategy": name, "seconds": seconds,
                         "build_s": build, "notes_per_s": n / seconds, "recall": recall, "how": how,
                         "load": _load()})
            print(rows[-1], flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    out = []
    for job in ("embed", "i2i"):
        picked = [r for r in rows if r["job"] == job]
        if picked:
            base = next(r for r in picked if r["run"] == "no-ray")["seconds"]
            out += [f"| {job}: run | notes | seconds | notes/s | vs no Ray | load avg |", "|---|---:|---:|---:|---:|---|"]
            out += [f"| {r['run']} | {r['notes']:,} | {r['seconds']:.1f} | {r['notes_per_s']:.1f} | "
                    f"{r['seconds'] / base:.2f}x time | {r['load']} |" for r in picked]
            out.append("")
    picked = [r for r in rows if r["job"] == "synthetic"]
    if picked:
        out += ["| notes | dim | strategy | time (s) | index build (s) | notes/s | recall@k vs exact | how | load avg |",
                "|---:|---:|---|---:|---:|---:|---:|---|---|"]
        out += [f"| {r['notes']:,} | {r['dim']} | {r['strategy']} | {r['seconds']:.1f} | {r['build_s']:.1f} | "
                f"{r['notes_per_s']:.0f} | {r['recall']:.3f} | {r['how']} | {r['load']} |" for r in picked]
    return "\n".join(out)

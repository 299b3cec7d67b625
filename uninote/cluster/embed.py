"""``uninote embed --ray``: Ray Data over the corpus in shard-sized blocks, the model in an actor pool.

The corpus is read on the driver by ``load_corpus`` (native folders as they are; the fashion
parquet and Qilin tables materialised once into a native folder, as for a local run) and cut
into blocks of ``shard_notes`` notes, the shards of the one-machine path. Each block's notes are
written, one block at a time, to ``<out>/.parts/blocks/shard-NNNNN.json`` (on the storage every
node reads), so the driver and the object store hold one small row per shard (its index and
that file's path), not the records: their memory does not grow with the corpus beyond the
corpus itself (the block files are written before the job starts, one sequential pass, and each
is deleted once its shard is adopted). A Ray Data dataset of those rows goes through ``map_batches`` with
``ShardEmbedder``, a callable class run by a
fixed pool of ``workers`` actors: each loads the model once (``num_gpus=1`` and CUDA when the
cluster has GPUs; else CPU, where ``--runtime auto`` runs the frozen backbones through ONNX
Runtime) and embeds one block per call, exactly as ``embed_to_disk`` embeds one shard.

Each actor writes its shard's files itself, to ``<out>/.parts/shard-NNNNN`` (a temporary folder
renamed into place, with the manifest entry beside the files): a block retried after a worker
died finds its shard there, or writes it again whole. The driver moves finished shards into the
folder in order (``EmbeddingWriter.adopt``), so the manifest always lists a complete prefix; an
interrupted job re-run with the same ``--out`` keeps the listed and the staged shards (after
checking their checksums) and embeds only the missing ones. The result is the folder
``embed_to_disk`` writes: the same shards, the same vectors (within float tolerance: the
backbones run on whatever each node has).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path

from uninote.cluster.connect import cluster_cpus, cluster_gpus, connect
from uninote.data.note import Note
from uninote.embedding_store import EmbeddingWriter, check_resumable, shard_arrays, shard_corpus
from uninote.shards import CorruptShardError, shard_name, verify, write_shard_files

STAGING = ".parts"
ENTRY = "entry.json"
BLOCKS = "blocks"  # under STAGING: the notes of each shard still to embed, one JSON file per shard


def staged_shard(directory: Path, index: int) -> Path:
    return directory / STAGING / shard_name(index)


def read_staged(directory: Path, index: int) -> dict | None:
    """The staged shard's record (entry, dim, meta) when its files pass their checksums, else None."""
    folder = staged_shard(directory, index)
    try:
        record = json.loads((folder / ENTRY).read_text())
        verify(folder.parent, {"shards": [{"name": folder.name, "files": record["entry"]["files"]}]})
    except (OSError, ValueError, KeyError, CorruptShardError):
        shutil.rmtree(folder, ignore_errors=True)
        return None
    return record


class ShardEmbedder:
    """Ray Data actor: the model loaded once; each row of a batch is one shard to embed and stage."""

    def __init__(self, model: str, runtime: str | None, device: str, threads: int, directory: str,
                 arrays: dict[str, str], regions: bool, batch_size: int, shard_notes: int):
        import torch

        from uninote.model import load_model

        torch.set_num_threads(threads)
        self.model = load_model(model, device=device, runtime=runtime)
        self.directory, self.arrays, self.regions = Path(directory), arrays, regions
        self.batch_size, self.shard_notes = batch_size, shard_notes

    def __call__(self, batch: dict) -> dict:
        from uninote.data.corpus import Corpus

        done = []
        for index, path in zip(batch["shard"], batch["path"]):
            index = int(index)
            if read_staged(self.directory, index) is None:
                block = json.loads(Path(str(path)).read_text())
                corpus = Corpus(block["root"], [Note.from_json(n) for n in block["notes"]], name=block["name"])
                emb = self.model.embed_corpus(corpus, batch_size=self.batch_size, progress=False)
                self._stage(index, emb)
            done.append(index)
        return {"shard": done}

    def _stage(self, index: int, emb) -> None:
        final = staged_shard(self.directory, index)
        tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
        entry = write_shard_files(tmp, shard_arrays(emb, index * self.shard_notes, self.regions),
                                  self.arrays, ids=emb.note_ids)
        (tmp / ENTRY).write_text(json.dumps({"entry": entry, "dim": emb.dim, "meta": emb.meta}))
        try:
            os.replace(tmp, final)
        except OSError:  # a retried attempt of the same block finished first: same content
            shutil.rmtree(tmp, ignore_errors=True)


def write_blocks(corpus, todo: list[int], shard_notes: int, directory: Path) -> list[dict]:
    """Write the notes of each shard in ``todo`` to its block file under ``<directory>/.parts/blocks``
    (one block in memory at a time); the rows Ray Data carries: ``{"shard", "path"}``."""
    folder = directory / STAGING / BLOCKS
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in todo:
        part = shard_corpus(corpus, index * shard_notes, shard_notes)
        path = folder / f"{shard_name(index)}.json"
        tmp = path.with_name(f".tmp-{path.name}-{uuid.uuid4().hex[:8]}")
        tmp.write_text(json.dumps({"root": str(Path(part.root).resolve()), "name": part.name,
                                   "notes": [n.to_json() for n in part.notes]}, ensure_ascii=False))
        os.replace(tmp, path)
        rows.append({"shard": index, "path": str(path.resolve())})
    return rows


def embed_on_cluster(address: str, model_spec: str, corpus, directory: str | Path, *, workers: int | None = None,
                     runtime: str | None = None, threads: int = 1, batch_size: int = 256, dtypes=None,
                     regions: bool = True, shard_notes: int = 100_000, meta: dict | None = None) -> dict:
    """Embed ``corpus`` on the Ray cluster at ``address`` into ``directory`` (see module docstring);
    returns what ran: shards embedded now, workers, GPUs per worker, seconds."""
    from uninote.model import load_model

    ray = connect(address)
    start = time.perf_counter()
    directory = Path(directory)
    version = load_model(model_spec, runtime=runtime).version
    writer = EmbeddingWriter(directory, version, dtypes, regions, meta=dict(meta or {}, shard_notes=shard_notes),
                             resume=True)
    check_resumable(writer, corpus, shard_notes, directory)
    n_shards = -(-len(corpus) // shard_notes)
    (directory / STAGING).mkdir(exist_ok=True)
    staged = {i: r for i in range(writer.done, n_shards) if (r := read_staged(directory, i)) is not None}
    todo = [i for i in range(writer.done, n_shards) if i not in staged]
    gpus = 1 if cluster_gpus(ray) else 0
    workers = max(1, min(workers or (cluster_gpus(ray) or cluster_cpus(ray)), max(len(todo), 1)))

    def adopt_ready() -> None:
        while writer.done < n_shards:
            record = staged.get(writer.done) or read_staged(directory, writer.done)
            if record is None:
                return
            writer.adopt(staged_shard(directory, writer.done), record["entry"], record["dim"], record["meta"])
            staged.pop(writer.done - 1, None)
            (directory / STAGING / BLOCKS / f"{shard_name(writer.done - 1)}.json").unlink(missing_ok=True)

    adopt_ready()
    if todo:
        dataset = ray.data.from_items(write_blocks(corpus, todo, shard_notes, directory), override_num_blocks=len(todo))
        embedded = dataset.map_batches(
            ShardEmbedder, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers),
            num_gpus=gpus, num_cpus=0 if gpus else 1,
            fn_constructor_kwargs=dict(model=model_spec, runtime=runtime, device="cuda" if gpus else "cpu",
                                       threads=threads, directory=str(directory.resolve()),
                                       arrays=writer.shards.arrays, regions=regions, batch_size=batch_size,
                                       shard_notes=shard_notes))
        for _ in embedded.iter_rows():
            adopt_ready()
    adopt_ready()
    if writer.done != n_shards:
        raise CorruptShardError(f"{directory}: shards {writer.done}..{n_shards - 1} were not written by the "
                                "cluster; re-run with the same --out to finish them")
    writer.close()
    shutil.rmtree(directory / STAGING, ignore_errors=True)
    return {"shards": len(todo), "workers": workers, "gpus_per_worker": gpus,
            "seconds": time.perf_counter() - start}

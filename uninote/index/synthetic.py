"""Seeded synthetic embeddings for tests and the scale benchmark.

Matryoshka-like clustered vectors (``SyntheticSpec``), generated exactly as follows:

1. ``n_clusters`` centres ``mu_c ~ N(0, I_D)`` (default one cluster per 100 vectors).
2. Vector i picks a cluster ``c_i`` uniformly and is ``x_i = s * (mu_c + noise * z_i)``,
   ``z_i ~ N(0, I_D)``, with the per-dimension scale ``s_j = (1 + j / decay_tau) ** (-decay_alpha / 2)``:
   variance decays as a power law over dimensions, so leading dims carry most of the signal, as
   in a Matryoshka-trained model (defaults: alpha=1, tau=16 puts ~34% of the variance in the
   first 64 of 768 dims and ~45% in the first 128).
3. Rows are L2-normalised at the dim used (the prefix of the full-dim row, re-normalised: exactly
   ``embeddings.truncate``).

Columns are generated in blocks of 64 from a generator seeded by (seed, stream, row chunk, column
block), so the first d dims of a vector are identical whether or not the other D - d were
generated: a 1M x 128 table needs 0.5 GB, not the 3 GB of 1M x 768. Queries are fresh vectors
from the same clusters (``stream="query"``), never corpus members.

``synthetic_embeddings`` builds a small ``NoteEmbeddings`` with text, image and region vectors
around each note vector, for unit tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import numpy as np

from uninote.embeddings import NoteEmbeddings, l2_normalize

BLOCK = 64
CHUNK = 65_536
STREAMS = {"corpus": 0, "query": 1}


@dataclass
class SyntheticSpec:
    """Parameters of a synthetic Matryoshka-like corpus (see module docstring)."""

    n: int  # corpus vectors
    full_dim: int = 768  # D
    n_clusters: int = 0  # 0 = max(8, n // 100)
    noise: float = 0.9  # within-cluster spread relative to the spread of centres
    decay_alpha: float = 1.0  # power-law exponent of the per-dim variance
    decay_tau: float = 16.0  # dims over which the variance halves at first
    seed: int = 0

    @property
    def clusters(self) -> int:
        return self.n_clusters or max(8, self.n // 100)

    def scale(self, dim: int) -> np.ndarray:
        j = np.arange(dim, dtype=np.float64)
        return ((1 + j / self.decay_tau) ** (-self.decay_alpha / 2)).astype(np.float32)


@lru_cache(maxsize=2 * 768 // BLOCK)
def centres_block(seed: int, clusters: int, col: int, width: int) -> np.ndarray:
    """Columns ``col..col+width`` of every cluster centre (cached: at 10M they are 100k x 64 per
    block, more numbers than a 65,536-row chunk; ``centres_block.cache_clear()`` frees them)."""
    return np.random.default_rng([seed, 9, col]).standard_normal((clusters, width), np.float32)


def _block(spec: SyntheticSpec, stream: int, chunk: int, col: int, rows: int, assign: np.ndarray,
           out: np.ndarray) -> None:
    """Columns ``col..col+64`` of one row chunk, computed into ``out`` (rows, width) in place:
    ``(centres[assign] + noise * z) * scale`` with no temporaries beyond the draw."""
    width = out.shape[1]
    centres = centres_block(spec.seed, spec.clusters, col, width)
    z = np.random.default_rng([spec.seed, stream, chunk, col]).standard_normal((rows, width), np.float32)
    np.multiply(z, spec.noise, out=out)
    out += centres[assign]
    out *= spec.scale(col + width)[col:]


def chunk_into(spec: SyntheticSpec, dim: int, start: int, out: np.ndarray, stream: str = "corpus",
               normalize: bool = True) -> np.ndarray:
    """Rows ``start..start+len(out)`` (``start`` a multiple of ``CHUNK``, at most ``CHUNK`` rows) of
    the (dim)-d table, written into ``out`` (any float dtype: a float16 ``out`` is the float32
    row rounded once). Returns ``out``."""
    if dim > spec.full_dim:
        raise ValueError(f"dim {dim} exceeds the synthetic full dim {spec.full_dim}")
    if start % CHUNK or not 0 < len(out) <= CHUNK:
        raise ValueError(f"a chunk starts at a multiple of {CHUNK} and has 1..{CHUNK} rows (got {start}, {len(out)})")
    sid, chunk, rows = STREAMS[stream], start // CHUNK, len(out)
    assign = np.random.default_rng([spec.seed, sid, chunk, 10**6]).integers(0, spec.clusters, rows)
    full = -(-dim // BLOCK) * BLOCK  # blocks are drawn whole; a dim inside a block is cut after
    x = np.empty((rows, min(full, spec.full_dim)), np.float32)
    for c in range(0, x.shape[1], BLOCK):
        _block(spec, sid, chunk, c, rows, assign, x[:, c:c + BLOCK])
    x = x[:, :dim]
    if normalize:  # the same arithmetic as l2_normalize: the norm of the float32 row, one division
        norms = np.sqrt(np.add.reduce(x * x, axis=-1, keepdims=True))
        np.divide(x, np.maximum(norms, 1e-12), out=out, casting="same_kind")
    else:
        out[...] = x
    return out


def iter_chunks(spec: SyntheticSpec, dim: int, stream: str = "corpus", n: int | None = None,
                normalize: bool = True, first: int = 0) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, block (rows, dim)) chunks of the synthetic table, prefix-consistent across dims.

    ``first`` (a multiple of ``CHUNK``) starts the table there: rows ``first..n-1`` equal the same
    rows of the whole table, so a table can be generated (or resumed) piece by piece."""
    if dim > spec.full_dim:
        raise ValueError(f"dim {dim} exceeds the synthetic full dim {spec.full_dim}")
    if first % CHUNK:
        raise ValueError(f"first row {first} must be a multiple of {CHUNK}")
    n = spec.n if n is None else n
    for start in range(first, n, CHUNK):
        yield start, chunk_into(spec, dim, start, np.empty((min(CHUNK, n - start), dim), np.float32), stream,
                                normalize)


def synthetic_vectors(spec: SyntheticSpec, dim: int, stream: str = "corpus", n: int | None = None) -> np.ndarray:
    """The whole (n, dim) normalised table (mind memory: n * dim * 4 bytes)."""
    n = spec.n if n is None else n
    out = np.empty((n, dim), np.float32)
    for start, block in iter_chunks(spec, dim, stream, n):
        out[start:start + len(block)] = block
    return out


def synthetic_embeddings(n_notes: int, dim: int = 64, images: tuple[int, int] = (0, 3),
                         regions_per_image: int = 4, n_clusters: int = 8, seed: int = 0,
                         model_version: str = "synthetic") -> NoteEmbeddings:
    """A small clustered ``NoteEmbeddings``: text/photo/region vectors scattered around each note."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    note = l2_normalize(centres[rng.integers(0, n_clusters, n_notes)] + 0.5 * rng.standard_normal((n_notes, dim)))
    text = l2_normalize(note + 0.3 * rng.standard_normal((n_notes, dim)))
    counts = rng.integers(images[0], images[1] + 1, n_notes)
    image_owner = np.repeat(np.arange(n_notes), counts)
    image = l2_normalize(note[image_owner] + 0.3 * rng.standard_normal((len(image_owner), dim)))
    region_parent = np.repeat(np.arange(len(image_owner)), regions_per_image)
    region = l2_normalize(image[region_parent] + 0.5 * rng.standard_normal((len(region_parent), dim)))
    first_image = np.concatenate([[0], np.cumsum(counts)[:-1]])
    region_image = region_parent - first_image[image_owner[region_parent]]
    ids = [f"n{i:05d}" for i in range(n_notes)]
    return NoteEmbeddings(ids, note, text, image, image_owner, region, image_owner[region_parent],
                          region_image, model_version)

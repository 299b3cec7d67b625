"""The page cache and a memory-mapped version: hand back the pages a read mapped into this
process, and read a version's vectors ahead into the cache.

A read of rows of a mapped table maps the file's pages into the process (and the kernel maps up
to 64 KB around each faulted page), so after the start's shortlist pass over a million-note
version, or a map layout's sample of random rows, the process's RSS counts gigabytes of file
pages it no longer uses. ``release_mapped`` drops those mappings (``madvise(MADV_DONTNEED)``: the
pages stay in the page cache, and a later read maps them again without disk I/O), so RSS stays
close to what the process holds itself (``RssAnon``).

``prefetch`` reads the served version's full-dim vector files through once, into the page cache,
when they fit in a share of the memory available: a re-rank after a restart then reads its rows
from RAM, not from the disk (at a million notes, the slow tail of Explore's searches was such
reads). It reads with ``pread`` into one small buffer, so nothing is mapped into the process and
its RSS does not grow; under memory pressure the kernel drops those pages first. (A
``posix_fadvise(WILLNEED)`` would be cheaper, but the kernel caps it at one readahead window,
about a megabyte.)
"""

from __future__ import annotations

import logging
import mmap
import os
import time

import numpy as np
import psutil

from uninote.embeddings import GRANULARITIES

log = logging.getLogger("uninote.service")
PREFETCH_SHARE = 0.5  # of the memory available when the version opens
CHUNK = 8 << 20  # bytes per read


def _maps(array) -> list:
    """The ``mmap`` objects behind a memory map or a ``ShardedArray`` (none for an in-RAM array)."""
    found = []
    for part in getattr(array, "parts", None) or [array]:
        m = getattr(part, "_mmap", None)
        if m is not None:
            found.append(m)
    return found


def release_mapped(served) -> int:
    """Drop this process's mappings of the served version's mapped files; returns maps released."""
    if not hasattr(mmap, "MADV_DONTNEED"):
        return 0
    arrays = [served.embeddings.vectors(g)[0] for g in GRANULARITIES]
    retriever = served.retriever
    arrays += [getattr(retriever.table(g, retriever.full_dim), "_source", None) for g in GRANULARITIES]
    released = 0
    for m in {id(m): m for a in arrays if a is not None for m in _maps(a)}.values():
        try:
            m.madvise(mmap.MADV_DONTNEED)
            released += 1
        except (OSError, ValueError):  # a closed map, or a platform that refuses: nothing to hand back
            pass
    return released


def file_ranges(array) -> list[tuple[str, int, int]]:
    """(file, byte offset, bytes) of each memory-mapped part of an array or ``ShardedArray``."""
    parts = getattr(array, "parts", None) or [array]
    return [(str(p.filename), int(p.offset), int(p.nbytes)) for p in parts
            if isinstance(p, np.memmap) and getattr(p, "filename", None)]


def prefetch(served, granularities=GRANULARITIES, share: float = PREFETCH_SHARE,
             available: int | None = None) -> int:
    """Read ahead the served version's full-dim vectors of ``granularities`` (in that order,
    each only while the total fits ``share`` of the ``available`` memory, default: now). Returns
    the bytes read; 0 when nothing is mapped or nothing fits."""
    if share <= 0:
        return 0
    budget = share * (psutil.virtual_memory().available if available is None else available)
    retriever, asked, t0 = served.retriever, 0, time.perf_counter()
    for granularity in granularities:
        try:
            source = getattr(retriever.table(granularity, retriever.full_dim), "_source", None)
        except (KeyError, ValueError):  # a version without this granularity
            continue
        ranges = file_ranges(source) if source is not None else []
        size = sum(n for _, _, n in ranges)
        if not ranges or asked + size > budget:
            continue
        asked += sum(_read_through(path, offset, n) for path, offset, n in ranges)
    if asked:
        log.info("%s: %.2f GB of vectors read into the page cache in %.1f s", served.version, asked / 1e9,
                 time.perf_counter() - t0)
    return asked


def read_files(paths, share: float = PREFETCH_SHARE, available: int | None = None) -> int:
    """Read whole files through into the page cache, in order, each while the total fits ``share``
    of the ``available`` memory (default: now); the bytes read. For what a search reads besides
    the vectors: a lazily read corpus's notes and index, the thumbnails."""
    budget = share * (psutil.virtual_memory().available if available is None else available)
    done = 0
    for path in paths:
        try:
            size = os.path.getsize(path)
        except OSError:
            continue
        if done + size > budget:
            continue
        done += _read_through(str(path), 0, size)
    return done


def _read_through(path: str, offset: int, n: int) -> int:
    """Read ``n`` bytes of ``path`` from ``offset`` into a scratch buffer; the bytes read."""
    buf, done = memoryview(bytearray(min(CHUNK, max(n, 1)))), 0
    try:
        with open(path, "rb", buffering=0) as fh:
            while done < n:
                got = os.preadv(fh.fileno(), [buf[: min(CHUNK, n - done)]], offset + done)
                if got <= 0:
                    break
                done += got
    except OSError as exc:  # a version folder removed meanwhile: nothing to read ahead
        log.warning("prefetch %s: %s", path, exc)
    return done

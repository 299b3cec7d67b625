"""The page cache and a memory-mapped version: hand back the pages a read mapped into this
process, and read a version's vectors ahead into the cache.

A read of rows of a mapped table maps the file's pages into the process (and the kernel maps up
to 64 KB around each faulted page), so after the start's shortlist pass over a million-note
version, or a map layout's sample of random rows, the process's RSS counts gigabytes of file
pages it no longer uses. ``release_mapped`` drops those mappings (``madvise(MADV_DONTNEED)``: the
pages stay in the page cache, and a later read maps them again without disk I/O), so RSS stays
close to what the process holds itself (``RssAnon``).

``read_ahead`` reads groups of file ranges through once, into the page cache, each while it fits
in a share of the memory available (``vector_ranges``: the served version's full-dim vectors;
``file_groups``: whole files, such as a lazily read corpus and the thumbnails): a re-rank after a
restart then reads its rows from RAM, not from the disk (at a million notes, the slow tail of
Explore's searches was such reads). It reads with ``pread`` into one small buffer, so nothing is mapped into the process and
its RSS does not grow; under memory pressure the kernel drops those pages first. (A
``posix_fadvise(WILLNEED)`` would be cheaper, but the kernel caps it at one readahead window,
about a megabyte.)
"""

from __future__ import annotations

import logging
import mmap
import os

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


def vector_ranges(served, granularities=GRANULARITIES) -> list[list[tuple[str, int, int]]]:
    """Per granularity (in that order), the file ranges of the served version's full-dim vectors."""
    retriever, groups = served.retriever, []
    for granularity in granularities:
        try:
            source = getattr(retriever.table(granularity, retriever.full_dim), "_source", None)
        except (KeyError, ValueError):  # a version without this granularity
            continue
        if source is not None and (ranges := file_ranges(source)):
            groups.append(ranges)
    return groups


def file_groups(paths) -> list[list[tuple[str, int, int]]]:
    """One group per existing file: the whole file."""
    groups = []
    for path in paths:
        try:
            groups.append([(str(path), 0, os.path.getsize(path))])
        except OSError:
            continue
    return groups


def read_ahead(groups, share: float = PREFETCH_SHARE, available: int | None = None) -> int:
    """Read groups of (file, offset, bytes) ranges through into the page cache, in order, each group
    whole and only while the total fits ``share`` of the ``available`` memory (default: now);
    the bytes read."""
    if share <= 0:
        return 0
    budget = share * (psutil.virtual_memory().available if available is None else available)
    done = 0
    for ranges in groups:
        if done + sum(n for _, _, n in ranges) <= budget:
            done += sum(_read_through(path, offset, n) for path, offset, n in ranges)
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
        log.warning("read-ahead %s: %s", path, exc)
    return done

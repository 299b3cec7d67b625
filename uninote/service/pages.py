"""Hand back the pages a read of a memory-mapped version mapped into this process.

A read of rows of a mapped table maps the file's pages into the process (and the kernel maps up
to 64 KB around each faulted page), so after the start's shortlist pass over a million-note
version, or a map layout's sample of random rows, the process's RSS counts gigabytes of file
pages it no longer uses. ``release_mapped`` drops those mappings (``madvise(MADV_DONTNEED)``: the
pages stay in the page cache, and a later read maps them again without disk I/O), so RSS stays
close to what the process holds itself (``RssAnon``).
"""

from __future__ import annotations

import mmap

from uninote.embeddings import GRANULARITIES


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

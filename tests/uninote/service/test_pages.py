"""Pages a read of a memory-mapped version mapped into the process are handed back; a version's
vectors are read ahead into the page cache without growing the process."""

from __future__ import annotations

import ctypes
import mmap
import os
import sys

import numpy as np
import pytest

from uninote.embeddings import NoteEmbeddings
from uninote.index import Retriever
from uninote.index.synthetic import synthetic_embeddings
from uninote.service.pages import file_groups, file_ranges, read_ahead, release_mapped, vector_ranges
from uninote.service.types import ServedVersion

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")


def _rss_file() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("RssFile:"))


def test_release_mapped_drops_the_file_pages_a_scan_mapped(tmp_path):
    emb = synthetic_embeddings(6_000, dim=768, seed=0)  # 18 MB per one-vector table as float32
    emb.save(tmp_path / "e", regions=False, dtypes="float32")
    Retriever(emb).save(tmp_path / "index")
    mapped = NoteEmbeddings.load(tmp_path / "e")
    retriever = Retriever.load(tmp_path / "index")
    served = ServedVersion("v", tmp_path, None, mapped, retriever)
    before = _rss_file()
    first = retriever.search(emb.note_ids[5], k=5, strategy="exact")  # a full-dim scan of the note table
    total = float(np.asarray(mapped.note, np.float32).sum())  # and every row of the embeddings
    scanned = _rss_file()
    assert scanned - before > 15e6  # the tables' pages are mapped in now
    assert release_mapped(served) >= 2
    assert _rss_file() - before < 0.2 * (scanned - before)
    assert retriever.search(emb.note_ids[5], k=5, strategy="exact") == first  # the maps still read
    assert float(np.asarray(mapped.note, np.float32).sum()) == total


def _cached_share(path: str, offset: int, n: int) -> float:
    """Share of the pages of bytes [offset, offset + n) of a file in the page cache (``mincore``
    on a fresh private map of the file)."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        m = mmap.mmap(fh.fileno(), size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    try:
        pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
        vec = (ctypes.c_ubyte * pages)()
        addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(size), vec) == 0, os.strerror(ctypes.get_errno())
        first, last = offset // mmap.PAGESIZE, (offset + n - 1) // mmap.PAGESIZE
        return sum(vec[i] & 1 for i in range(first, last + 1)) / (last - first + 1)
    finally:
        del addr
        m.close()


def _served(tmp_path):
    emb = synthetic_embeddings(6_000, dim=768, seed=0)
    emb.save(tmp_path / "e", regions=False, dtypes="float32")
    Retriever(emb).save(tmp_path / "index")
    return ServedVersion("v", tmp_path, None, NoteEmbeddings.load(tmp_path / "e"), Retriever.load(tmp_path / "index"))


def test_prefetch_reads_the_vectors_into_the_page_cache_not_into_the_process(tmp_path):
    served = _served(tmp_path)
    source = served.retriever.table("note", served.retriever.full_dim)._source
    ranges = file_ranges(source)
    assert ranges and sum(n for _, _, n in ranges) == 6_000 * 768 * 4
    files = sorted({path for path, _, _ in ranges})
    release_mapped(served)  # the load's reads mapped pages in: a mapped page stays in the cache
    for path in files:  # out of the cache (written pages first go to disk)
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    if max(_cached_share(*r) for r in ranges) > 0.5:
        pytest.skip("this file system keeps the pages cached (tmpfs?)")
    too_small = read_ahead(vector_ranges(served, ("note",)), available=1_000_000)  # 18 MB > half of 1 MB
    assert too_small == 0 and max(_cached_share(*r) for r in ranges) < 0.5
    before = _rss_file()
    assert read_ahead(vector_ranges(served, ("note",))) >= 6_000 * 768 * 4
    assert min(_cached_share(*r) for r in ranges) >= 0.99
    assert _rss_file() - before < 2e6  # cached, not mapped into this process


def test_read_files_caches_whole_files_in_order_within_the_budget(tmp_path):
    files = []
    for i, size in enumerate((3_000_000, 5_000_000, 2_000_000)):
        path = tmp_path / f"f{i}.bin"
        path.write_bytes(os.urandom(size))
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
        files.append(path)
    if max(_cached_share(str(p), 0, p.stat().st_size) for p in files) > 0.5:
        pytest.skip("this file system keeps the pages cached (tmpfs?)")
    # half of 12 MB is 6 MB: the first file fits, the second would not, the third still does
    assert read_ahead(file_groups(files + [tmp_path / "missing.bin"]), available=12_000_000) == 5_000_000
    shares = [_cached_share(str(p), 0, p.stat().st_size) for p in files]
    assert shares[0] >= 0.99 and shares[1] < 0.5 and shares[2] >= 0.99

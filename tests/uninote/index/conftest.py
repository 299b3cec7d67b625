import numpy as np
import pytest

from uninote.index.synthetic import synthetic_embeddings


@pytest.fixture(scope="module")
def emb():
    """400 clustered notes, full dim 96, 0-3 photos each with 4 regions per photo."""
    return synthetic_embeddings(400, dim=96, n_clusters=6, seed=1)


def with_duplicate(e, src: int, dst: int):
    """A copy of ``e`` where note ``dst`` is an exact duplicate of note ``src`` (every vector)."""
    from uninote.embeddings import NoteEmbeddings

    note, text = e.note.copy(), e.text.copy()
    note[dst], text[dst] = note[src], text[src]

    def dup(vecs, owner, extra=None):
        keep = owner != dst
        src_rows = np.flatnonzero(owner == src)
        v = np.concatenate([vecs[keep], vecs[src_rows]])
        o = np.concatenate([owner[keep], np.full(len(src_rows), dst)])
        x = None if extra is None else np.concatenate([extra[keep], extra[src_rows]])
        return v, o, x

    img, img_o, _ = dup(e.image, e.image_owner)
    reg, reg_o, reg_i = dup(e.region, e.region_owner, e.region_image)
    return NoteEmbeddings(e.note_ids, note, text, img, img_o, reg, reg_o, reg_i, e.model_version)

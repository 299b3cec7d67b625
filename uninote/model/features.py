"""Backbone feature cache: run the frozen towers over a corpus once, train and re-embed from it.

Per corpus we keep text features (N, F_text), pooled photo features (M, F_img) and region-grid
features (M, R, F_img) in float16, with ``image_owner`` (note row per photo) and ``image_index``
(which photo of the note). For a model that pools token states (``text_pooling='attention'``) the
text's token states are kept too, ragged: ``tokens`` (sum of lengths, F_text) with
``token_offsets`` (N + 1), in a separate, larger entry (2 bytes per dim per token: about 7 KB
for a 10-token title with MiniLM). For a model whose last image blocks train
(``image_trained_blocks``) the photo part is instead ``image_map`` (M, C, h, w) float16: the frozen
blocks' feature map at the first trained block's input, the same for every checkpoint with that
cut. ``corpus_features`` turns it into pooled and region features with the model's trained blocks
(what serving, evaluation and RL read); SFT asks for the maps (``maps=True``) and trains the
blocks on them. Stored as safetensors + JSON under
``$UNINOTE_CACHE/features/<fingerprint>/``; the fingerprint covers the corpus content (ids,
texts, photo paths, sizes and mtimes), the backbones, image size, region grid and text length (and the cut, for maps;
and whether the towers ran as INT8, ``--runtime onnx-int8``).
Broken photos are skipped with one warning that counts them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save
from tqdm.auto import tqdm

from uninote.embedding_store import DEFAULT_SHARD_NOTES, EmbeddingWriter
from uninote.embeddings import NoteEmbeddings
from uninote.fileio import atomic_write
from uninote.model.images_io import photo_batches
from uninote.model.onnx_runtime import quantized
from uninote.model.towers import masked_mean

log = logging.getLogger(__name__)
FORMAT_VERSION = 1


def cache_root() -> Path:
    return Path(os.environ.get("UNINOTE_CACHE", Path.home() / ".cache" / "uninote"))


@dataclass
class CorpusFeatures:
    note_ids: list[str]
    text: torch.Tensor  # (N, F_text)
    has_text: torch.Tensor  # (N,) bool
    image: torch.Tensor | None  # (M, F_img); None when the photos are ``image_map``
    image_owner: torch.Tensor  # (M,) sorted note rows
    image_index: torch.Tensor  # (M,) photo index within its note
    region: torch.Tensor | None  # (M, R, F_img); None when the photos are ``image_map``
    info: dict = field(default_factory=dict)
    tokens: torch.Tensor | None = None  # (sum of text lengths, F_text) token states, or None
    token_offsets: torch.Tensor | None = None  # (N + 1,) long: note i's tokens are [o[i], o[i+1])
    image_map: torch.Tensor | None = None  # (M, C, h, w) maps at the first trained image block, or None
    colour: torch.Tensor | None = None  # (M, 1 + R, K) beside image_map with image_colour_bins: the photo's
    #                                     colour histogram, then each region cell's (the map keeps no pixels)

    def __post_init__(self):
        n = len(self.note_ids)
        owner = self.image_owner.numpy()
        self.offsets = np.searchsorted(owner, np.arange(n + 1), side="left")
        self._row = {nid: i for i, nid in enumerate(self.note_ids)}

    def __len__(self) -> int:
        return len(self.note_ids)

    def rows_of(self, note_ids) -> np.ndarray:
        return np.array([self._row[i] for i in note_ids], dtype=np.int64)

    def batch(self, rows) -> dict[str, torch.Tensor]:
        """The ``UniNoteModel.forward_features`` input for these note rows (photo owners remapped)."""
        rows = np.asarray(rows, dtype=np.int64)
        img_rows = [np.arange(self.offsets[r], self.offsets[r + 1]) for r in rows]
        owner = np.concatenate([np.full(len(x), j) for j, x in enumerate(img_rows)] + [np.zeros(0)]).astype(np.int64)
        img = torch.from_numpy(np.concatenate(img_rows + [np.zeros(0, dtype=np.int64)]).astype(np.int64))
        t = torch.from_numpy(rows)
        out = {"text": self.text[t], "has_text": self.has_text[t], "image_owner": torch.from_numpy(owner),
               "image_rows": img}
        if self.image_map is not None:
            out["image_map"] = self.image_map[img]
            if self.colour is not None:
                out["image_colour"] = self.colour[img]
        else:
            out["image"], out["region"] = self.image[img], self.region[img]
        if self.tokens is not None:
            out["text_tokens"], out["text_mask"] = self.token_batch(t)
        return out

    def token_batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token states of these note rows, zero-padded to (B, T, F), and their (B, T) mask."""
        starts = self.token_offsets[rows]
        lengths = self.token_offsets[rows + 1] - starts
        width = max(int(lengths.max()) if len(rows) else 0, 1)
        mask = torch.arange(width)[None, :] < lengths[:, None]
        if not len(self.tokens):  # every text empty
            return torch.zeros(len(rows), width, self.tokens.shape[-1], dtype=self.tokens.dtype), mask
        index = (starts[:, None] + torch.arange(width)[None, :]).clamp(max=len(self.tokens) - 1)
        return self.tokens[index] * mask.unsqueeze(-1).to(self.tokens.dtype), mask


def subset_features(feats: CorpusFeatures, note_ids) -> CorpusFeatures:
    """The rows of ``feats`` for ``note_ids``, in that order (photos re-owned, token states kept), so
    a split of a corpus needs no second extraction. ``info`` is not carried over."""
    rows = feats.rows_of(note_ids)
    img = np.concatenate([np.arange(feats.offsets[r], feats.offsets[r + 1]) for r in rows])
    owner = np.concatenate([np.full(feats.offsets[r + 1] - feats.offsets[r], j) for j, r in enumerate(rows)])
    t, i = torch.from_numpy(rows), torch.from_numpy(img)
    tokens = offsets = None
    if feats.tokens is not None:
        o = feats.token_offsets
        tokens = torch.cat([feats.tokens[o[r]:o[r + 1]] for r in rows])
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), (o[t + 1] - o[t]).cumsum(0)])
    pick = lambda x: None if x is None else x[i]  # noqa: E731
    return CorpusFeatures([feats.note_ids[r] for r in rows], feats.text[t], feats.has_text[t], pick(feats.image),
                          torch.from_numpy(owner).long(), feats.image_index[i], pick(feats.region),
                          tokens=tokens, token_offsets=offsets, image_map=pick(feats.image_map),
                          colour=pick(feats.colour))


def fingerprint(corpus, cfg, int8: bool = False) -> str:
    """Content hash of what the frozen towers see, plus the backbone settings (and ``int8``: features
    from the INT8 towers, ``--runtime onnx-int8``, which are not interchangeable with float ones)."""
    settings = [FORMAT_VERSION, cfg.text_tower, cfg.image_tower, cfg.image_size, cfg.n_regions, cfg.max_text_tokens]
    if int8:
        settings.append("int8")
    if cfg.text_pooling == "attention":
        settings.append("token-states")  # a separate, larger entry; mean-pooling caches keep their key
    if getattr(cfg, "image_colour_bins", 0):
        settings.append(f"colour-{cfg.image_colour_bins}")  # histograms follow the features; other caches keep their key
    if getattr(cfg, "image_cut", None) is not None:
        settings.append(f"image-map-{cfg.image_cut}")  # maps at the first trained block; frozen caches keep theirs
    h = hashlib.sha256(json.dumps(settings).encode())
    for note in corpus.notes:
        h.update(f"{note.note_id}\x00{note.text()}\x00".encode())
        for i in range(len(note.images)):
            p = corpus.image_path(note, i)
            st = p.stat() if p.exists() else None
            h.update(f"{p}\x00{st.st_size if st else -1}\x00{st.st_mtime_ns if st else -1}\x00".encode())
    return h.hexdigest()[:20]


@torch.inference_mode()
def extract_features(corpus, model, batch_size: int = 64, progress: bool = True,
                     photos: CorpusFeatures | None = None) -> CorpusFeatures:
    """Run the model's towers over every text and photo of the corpus (no cache). ``photos``: features
    of the same corpus and image settings whose photo part is reused (only the texts are run)."""
    text, has_text, tokens, offsets = _text_part(corpus, model, batch_size, progress)
    image_part = _photo_part(corpus, model, batch_size, progress) if photos is None else {
        k: getattr(photos, k) for k in ("image", "image_owner", "image_index", "region", "image_map", "colour", "info")}
    return CorpusFeatures(note_ids=[n.note_id for n in corpus.notes], text=text, has_text=has_text,
                          tokens=tokens, token_offsets=offsets, **image_part)


def _text_part(corpus, model, batch_size: int, progress: bool):
    """Mean-pooled text features (N, F), has-text flags, and for attention pooling the token states."""
    texts = [n.text() for n in corpus.notes]
    chunks, token_chunks, lengths = [], [], []
    with_tokens = model.config.text_pooling == "attention"
    for s in tqdm(range(0, len(texts), batch_size), desc="text features", disable=not progress):
        if with_tokens:
            states, mask = model.text_tokens(texts[s:s + batch_size])
            chunks.append(masked_mean(states, mask).half().cpu())
            token_chunks.append(states[mask].half().cpu())
            lengths.append(mask.sum(1).cpu())
        else:
            chunks.append(model.text_features(texts[s:s + batch_size]).half().cpu())
    f_text = model.text_tower.feature_dim
    text = torch.cat(chunks) if chunks else torch.zeros(0, f_text, dtype=torch.half)
    has_text = torch.tensor([bool(t.strip()) for t in texts], dtype=torch.bool)
    if not with_tokens:
        return text, has_text, None, None
    tokens = torch.cat(token_chunks) if token_chunks else torch.zeros(0, f_text, dtype=torch.half)
    counts = torch.cat(lengths).long() if lengths else torch.zeros(0, dtype=torch.long)
    return text, has_text, tokens, torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])


def _photo_part(corpus, model, batch_size: int, progress: bool) -> dict:
    """Pooled and region features (or, with trained image blocks, the maps at the first one) of every
    readable photo, their owners and indexes, and ``info``."""
    refs = [(r, i) for r, note in enumerate(corpus.notes) for i in range(len(note.images))]
    paths = [corpus.image_path(corpus.notes[r], i) for r, i in refs]
    with_maps = getattr(model.config, "image_cut", None) is not None
    pooled, regions, maps, colour, owner, index, broken = [], [], [], [], [], [], []
    bar = tqdm(total=len(refs), desc="image features", disable=not progress)
    for s, (pixels, kept, unreadable) in zip(range(0, len(refs), batch_size),
                                              photo_batches(paths, model.config.image_size, batch_size)):
        broken += unreadable
        if pixels is not None:
            if with_maps:
                maps.append(model.pixel_maps(pixels).half().cpu())
                if model.config.image_colour_bins:
                    colour.append(model.colour_of(pixels).half().cpu())
            else:
                p, g = model.pixel_features(pixels)
                pooled.append(p.half().cpu())
                regions.append(g.half().cpu())
            owner += [refs[s + j][0] for j in kept]
            index += [refs[s + j][1] for j in kept]
        bar.update(min(batch_size, len(refs) - s))
    bar.close()
    if broken:
        log.warning("skipped %d unreadable photo(s) of %d, e.g. %s", len(broken), len(refs), broken[0])
    part = {"image_owner": torch.tensor(owner, dtype=torch.long), "image_index": torch.tensor(index, dtype=torch.long),
            "info": {"skipped_images": len(broken), "n_images": len(refs)}}
    if with_maps:
        if not maps:  # the map's shape is the frozen part's: run it once on a blank photo
            blank = torch.zeros(1, 3, model.config.image_size, model.config.image_size, dtype=torch.uint8)
            maps.append(model.pixel_maps(blank).half().cpu()[:0])
            colour.append(model.colour_of(blank).half()[:0] if model.config.image_colour_bins else None)
        colours = torch.cat(colour) if model.config.image_colour_bins else None
        return {**part, "image": None, "region": None, "image_map": torch.cat(maps), "colour": colours}
    f_img, cells = model.image_feature_dim, model.config.n_region_cells
    return {**part, "image": torch.cat(pooled) if pooled else torch.zeros(0, f_img, dtype=torch.half),
            "region": torch.cat(regions) if regions else torch.zeros(0, cells, f_img, dtype=torch.half),
            "image_map": None, "colour": None}


@torch.inference_mode()
def pool_maps(feats: CorpusFeatures, model, batch_size: int = 256) -> CorpusFeatures:
    """``feats`` with ``image_map`` replaced by pooled and region features (float16, as the cache
    keeps them) from the model's trained image blocks, the colour histograms kept beside the maps
    appended; features without maps come back as they are."""
    if feats.image_map is None:
        return feats
    maps, colour, n = feats.image_map, feats.colour, len(feats.image_map)
    if not n:  # no photos: one blank row gives the output shapes
        maps = maps.new_zeros(1, *maps.shape[1:])
        colour = None if colour is None else colour.new_zeros(1, *colour.shape[1:])
    pooled, regions = [], []
    for s in range(0, len(maps), batch_size):
        p, g = model.map_features(maps[s:s + batch_size])
        if colour is not None:
            p, g = model.append_colour(p, g, colour[s:s + batch_size])
        pooled.append(p.half().cpu())
        regions.append(g.half().cpu())
    return replace(feats, image=torch.cat(pooled)[:n], region=torch.cat(regions)[:n], image_map=None, colour=None)


def save_features(feats: CorpusFeatures, directory: Path) -> None:
    tensors = {k: getattr(feats, k).contiguous() for k in
               ("text", "has_text", "image", "image_owner", "image_index", "region", "tokens", "token_offsets",
                "image_map", "colour") if getattr(feats, k) is not None}
    atomic_write(directory / "features.json", json.dumps({"note_ids": feats.note_ids, "info": feats.info}).encode())
    atomic_write(directory / "features.safetensors", save(tensors))  # written last: its presence means complete


def load_features(directory: Path) -> CorpusFeatures:
    t = load_file(str(directory / "features.safetensors"))
    meta = json.loads((directory / "features.json").read_text())
    return CorpusFeatures(meta["note_ids"], t["text"], t["has_text"], t.get("image"), t["image_owner"],
                          t["image_index"], t.get("region"), meta.get("info", {}), t.get("tokens"),
                          t.get("token_offsets"), t.get("image_map"), t.get("colour"))


def corpus_features(corpus, model, progress: bool = True, use_cache: bool | None = None,
                    maps: bool = False) -> CorpusFeatures:
    """Features of a corpus: from the cache when backbones are frozen, else freshly extracted.

    With trained image blocks the cache holds maps at the first one; they are pooled through the
    model's blocks (``pool_maps``) unless ``maps`` asks for them as they are (SFT trains on them)."""
    feats = _cached_features(corpus, model, progress, use_cache)
    return feats if maps else pool_maps(feats, model)


def _cached_features(corpus, model, progress: bool, use_cache: bool | None) -> CorpusFeatures:
    use_cache = model.config.freeze_backbones if use_cache is None else use_cache
    if not use_cache:
        return extract_features(corpus, model, progress=progress)
    int8 = quantized(model)
    directory = cache_root() / "features" / fingerprint(corpus, model.config, int8)
    if (directory / "features.safetensors").exists():
        return load_features(directory)
    start = time.perf_counter()
    photos = None
    if model.config.text_pooling == "attention":  # the mean-pooling entry's photos are the same: run texts only
        mean_entry = cache_root() / "features" / fingerprint(corpus, replace(model.config, text_pooling="mean"), int8)
        photos = load_features(mean_entry) if (mean_entry / "features.safetensors").exists() else None
    feats = extract_features(corpus, model, progress=progress, photos=photos)
    feats.info = {**feats.info, "extract_seconds": round(time.perf_counter() - start, 2),
                  "photos_from_cache": photos is not None}
    save_features(feats, directory)
    return feats


@torch.inference_mode()
def embed_from_features(model, feats: CorpusFeatures, batch_size: int = 256, progress: bool = True,
                        start: int = 0, stop: int | None = None):
    """``NoteEmbeddings`` computed from backbone features (heads + fusion only), of notes
    ``start..stop-1`` (default all; owner rows relative to ``start``)."""
    stop = len(feats) if stop is None else stop
    parts = {k: [] for k in ("note", "text", "image", "image_owner", "region", "region_owner", "region_image")}
    model.eval()
    for s in tqdm(range(start, stop, batch_size), desc="embed", disable=not progress):
        rows = np.arange(s, min(s + batch_size, stop))
        batch = feats.batch(rows)
        out = model.forward_features(batch)
        parts["note"].append(out["note"].cpu())
        parts["text"].append(out["text"].cpu())
        parts["image"].append(out["image"].cpu())
        parts["image_owner"].append(out["image_owner"].cpu() + s - start)
        parts["region"].append(out["region"].cpu())
        parts["region_owner"].append(out["region_owner"].cpu() + s - start)
        parts["region_image"].append(feats.image_index[batch["image_rows"]][out["region_image"].cpu()])
    d = parts["note"][0].shape[-1] if parts["note"] else model.embed_dim
    cat = {k: (torch.cat(v).numpy() if v else np.zeros((0, d), np.float32)) for k, v in parts.items()}
    for k in ("image", "region"):
        cat[k] = cat[k].reshape(-1, d).astype(np.float32)
    for k in ("image_owner", "region_owner", "region_image"):
        cat[k] = cat[k].reshape(-1)
    return NoteEmbeddings(list(feats.note_ids[start:stop]), cat["note"].astype(np.float32).reshape(-1, d),
                          cat["text"].astype(np.float32).reshape(-1, d), cat["image"], cat["image_owner"],
                          cat["region"], cat["region_owner"], cat["region_image"], model_version=model.version,
                          meta={"dim": d, "source": "uninote", **feats.info})


def embed_features_to_disk(model, feats: CorpusFeatures, directory: str | Path, batch_size: int = 256,
                           shard_notes: int = DEFAULT_SHARD_NOTES, dtypes=None, progress: bool = True) -> Path:
    """``embed_from_features`` written shard by shard to ``directory`` (``uninote.embedding_store``):
    peak memory is one shard's embeddings besides the features, whatever the corpus size."""
    writer = EmbeddingWriter(directory, model.version, dtypes)
    for start in range(0, max(len(feats), 1), shard_notes):
        writer.write(embed_from_features(model, feats, batch_size, progress, start, min(start + shard_notes, len(feats))))
    return writer.close()

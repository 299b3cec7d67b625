"""``uninote embed``: write the NoteEmbeddings of a corpus for a model or a baseline."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "embed", help="embed a corpus (every granularity, full dim) with a model or baseline",
        description="Embed every note of a corpus at every granularity (note, text, image, region) "
        "and write uninote.embeddings.NoteEmbeddings (safetensors + JSON) to --out. Frozen-backbone "
        "models reuse the backbone feature cache, so re-embedding after training takes seconds.")
    p.add_argument("--model", required=True,
                   help="checkpoint folder, Hub id, or baseline:text | baseline:image | baseline:concat")
    p.add_argument("--corpus", required=True, help="corpus (native folder or any load_corpus source)")
    p.add_argument("--out", required=True, help="output folder for the embeddings")
    p.add_argument("--batch-size", type=int, default=256, help="notes per forward pass")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    import time

    import torch

    from uninote.data import load_corpus
    from uninote.model import load_model

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model = load_model(args.model)
    corpus = load_corpus(args.corpus)
    emb = model.embed_corpus(corpus, batch_size=args.batch_size, progress=not args.quiet)
    emb.meta.update(corpus=corpus.name, model=str(args.model))
    emb.save(args.out)
    print(f"wrote {args.out}: {len(emb)} notes, {len(emb.image)} photos, {len(emb.region)} regions, "
          f"dim {emb.dim}, model {emb.model_version}, {time.perf_counter() - start:.1f}s")
    return 0

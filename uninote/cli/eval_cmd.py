"""``uninote eval``: ndcg@10 / r_cap@10 / mrr@10 per query modality, granularity and dim."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from uninote import MATRYOSHKA_DIMS
from uninote.embeddings import GRANULARITIES, QUERY_MODALITIES
from uninote.cli.main import add_runtime

HELP = """Embed a corpus with a model (or load embeddings written by `uninote embed`) and, for every
query in the qrels, retrieve the top 10 other notes (the query itself excluded) for each
combination of query modality (note = photos+text, image = first photo only, text),
index granularity (note, image, text, region) and Matryoshka dim. Prints a markdown table and
writes JSON with --out.

Examples:
  uninote eval --model ~/.cache/uninote/models/sft-fashion --corpus fashion-test --out sft.json
  uninote eval --model baseline:concat --corpus fashion-test --dims 64,128,256,512,768
"""


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _str_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a model: ndcg@10, r_cap@10, mrr@10 per modality, "
                       "granularity and dim", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="checkpoint folder, Hub id, or baseline:text|image|concat")
    src.add_argument("--embeddings", type=Path, help="embeddings folder written by `uninote embed`")
    p.add_argument("--corpus", required=True, help="corpus: native folder, fashion catalogue, "
                   "Qilin table or Hub id (needed for the notes and, by default, the qrels)")
    p.add_argument("--qrels", type=Path, help="qrels.tsv to use instead of the corpus's own")
    p.add_argument("--dims", type=_int_list, default=list(MATRYOSHKA_DIMS),
                   help=f"Matryoshka prefixes to evaluate (default {','.join(map(str, MATRYOSHKA_DIMS))}; "
                   "the model's full dim is always added)")
    p.add_argument("--modalities", type=_str_list, default=list(QUERY_MODALITIES),
                   help=f"query modalities (default {','.join(QUERY_MODALITIES)})")
    p.add_argument("--granularities", type=_str_list, default=list(GRANULARITIES),
                   help=f"index granularities (default {','.join(GRANULARITIES)})")
    p.add_argument("--max-queries", type=int, default=None, help="evaluate a seeded sample of queries")
    p.add_argument("--mrr-min-grade", type=int, default=1, help="grade that counts as relevant for mrr@10")
    p.add_argument("--batch-size", type=int, default=64, help="embedding batch size")
    add_runtime(p)
    p.add_argument("--out", type=Path, help="write the results JSON here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from uninote.data import load_corpus
    from uninote.embeddings import NoteEmbeddings
    from uninote.eval import evaluate, markdown_table

    corpus = load_corpus(args.corpus)
    qrels = corpus.qrels
    if args.qrels is not None:
        from uninote.data.native import read_qrels
        from uninote.data.problems import Problems

        qrels = read_qrels(args.qrels, {n.note_id for n in corpus.notes},
                           Problems(on_error="fail", source=str(args.qrels)))
    if not qrels:
        from uninote.errors import CorpusError

        raise CorpusError("no qrels to evaluate against: the corpus has no qrels.tsv; pass --qrels FILE",
                          str(args.corpus))
    if args.embeddings is not None:
        emb = NoteEmbeddings.load(args.embeddings)
        name = emb.model_version
    else:
        from uninote.model import load_model

        model = load_model(args.model, runtime=args.runtime)
        emb = model.embed_corpus(corpus, batch_size=args.batch_size, progress=True)
        name = args.model
    report = evaluate(emb, qrels, dims=args.dims, modalities=args.modalities,
                      granularities=args.granularities, max_queries=args.max_queries,
                      mrr_min_grade=args.mrr_min_grade)
    out = {"model": name, "model_version": emb.model_version, "corpus": str(args.corpus),
           "n_notes": report.n_notes, "n_queries": report.n_queries, "results": report.results}
    print(markdown_table(report.results, title=f"{name} on {corpus.name} "
                         f"({report.n_notes} notes, {report.n_queries} queries)"))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2))
        print(f"wrote {args.out}", file=sys.stderr)
    return 0

"""Notes and corpora: the native folder format and adapters for other sources.

``load_corpus`` reads a native folder, the fashion catalogue (local or Hub) or a Qilin notes table;
``write_corpus`` writes the native format; ``split_corpus`` makes disjoint train/test corpora;
``load_image`` opens a photo safely; ``fashion_grade`` is the catalogue's graded relevance rule.
"""

from uninote.data.corpus import Corpus, Pair
from uninote.data.fashion import fashion_grade
from uninote.data.images import load_image
from uninote.data.loaders import corpus_location, load_corpus, write_corpus
from uninote.data.note import Note
from uninote.data.split import split_corpus, subset_corpus

__all__ = ["Corpus", "Note", "Pair", "corpus_location", "fashion_grade", "load_corpus", "load_image",
           "split_corpus", "subset_corpus", "write_corpus"]

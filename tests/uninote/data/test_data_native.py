"""Native reader: good input, every kind of bad input (fail and skip), round trip, split."""

from __future__ import annotations


import pytest
from data_testkit import jpeg_bytes, make_native, note_record

from uninote.data import Note, load_corpus, split_corpus, write_corpus
from uninote.data.problems import CorpusWarning
from uninote.errors import ConfigError, CorpusError


def test_reads_good_corpus(tmp_path):
    corpus = load_corpus(make_native(tmp_path / "c"))
    assert [n.note_id for n in corpus] == ["n0", "n1", "n2", "n3", "n4"]
    assert corpus.get("n2") == Note("n2", "title 2", "body 2", ["t0"], ["images/n2.jpg"], {"k": 2})
    assert corpus.image_path(corpus.get("n2")).read_bytes() == jpeg_bytes(2)
    assert corpus.qrels == {"n0": {"n1": 3, "n2": 1}, "n1": {"n0": 2}}
    assert [(p.query_id, p.positive_id, p.negative_ids) for p in corpus.pairs] == [("n0", "n1", ["n2", "n3"])]


def _notes_line5(record):
    """Build a corpus whose 5th notes.jsonl line is ``record`` (str = verbatim)."""
    def build(root):
        return make_native(root, records=[note_record(i) for i in range(4)] + [record])
    return build


def _image_n4(data: bytes):
    def build(root):
        make_native(root)
        (root / "images" / "n4.jpg").write_bytes(data)
        return root
    return build


def _qrels(text):
    return lambda root: make_native(root, qrels=text)


_GOOD_QRELS = "query_id\tnote_id\tgrade\nn0\tn1\t3\nn0\tn2\t1\nn1\tn0\t2\n"

# (case id, corpus builder, file, line, message fragment, notes kept in skip mode)
BAD_INPUTS = [
    ("malformed-json", _notes_line5('{"note_id": "n4", "title": '), "notes.jsonl", 5, "malformed JSON", 4),
    ("not-an-object", _notes_line5("[1, 2]"), "notes.jsonl", 5, "expected a JSON object", 4),
    ("missing-note-id", _notes_line5({"title": "no id"}), "notes.jsonl", 5, "missing required field 'note_id'", 4),
    ("note-id-not-str", _notes_line5(note_record(4, note_id=4)), "notes.jsonl", 5, "'note_id' must be", 4),
    ("tags-wrong-type", _notes_line5(note_record(4, tags="a b")), "notes.jsonl", 5, "field 'tags' must be list", 4),
    ("meta-wrong-type", _notes_line5(note_record(4, meta=[1])), "notes.jsonl", 5, "field 'meta' must be dict", 4),
    ("images-not-str", _notes_line5(note_record(4, images=[3])), "notes.jsonl", 5, "list of strings", 4),
    ("duplicate-id", _notes_line5(note_record(4, note_id="n3")), "notes.jsonl", 5,
     "duplicate note_id 'n3' (first seen on line 4)", 4),
    ("missing-image", _notes_line5(note_record(4, images=["images/nope.jpg"])), "notes.jsonl", 5,
     "image 'images/nope.jpg': image file not found", 5),
    ("truncated-jpeg", _image_n4(jpeg_bytes(4)[:400]), "notes.jsonl", 5, "truncated JPEG", 5),
    ("text-as-jpeg", _image_n4(b"hello, I am text\n" * 10), "notes.jsonl", 5, "unrecognised file signature", 5),
    ("empty-image", _image_n4(b""), "notes.jsonl", 5, "empty", 5),
    ("qrels-unknown-note", _qrels(_GOOD_QRELS + "n0\tzzz\t1\n"), "qrels.tsv", 5, "unknown note id 'zzz'", 5),
    ("qrels-unknown-query", _qrels(_GOOD_QRELS + "qq\tn1\t1\n"), "qrels.tsv", 5, "unknown note id 'qq'", 5),
    ("qrels-grade-range", _qrels(_GOOD_QRELS + "n0\tn3\t7\n"), "qrels.tsv", 5, "grade must be an integer 0-3", 5),
    ("qrels-grade-text", _qrels(_GOOD_QRELS + "n0\tn3\thigh\n"), "qrels.tsv", 5, "grade must be an integer 0-3", 5),
    ("qrels-columns", _qrels(_GOOD_QRELS + "n0\tn3\n"), "qrels.tsv", 5, "expected 3 tab-separated fields", 5),
    ("qrels-header", _qrels(_GOOD_QRELS.replace("query_id\tnote_id\tgrade", "q\tdoc\trel")), "qrels.tsv", 1,
     "header must be", 5),
    ("pairs-unknown-note",
     lambda root: make_native(root, pairs=[{"query_id": "n0", "positive_id": "n1", "negative_ids": []},
                                           {"query_id": "n0", "positive_id": "n1", "negative_ids": ["ghost"]}]),
     "pairs.jsonl", 2, "unknown note id 'ghost'", 5),
    ("pairs-missing-field", lambda root: make_native(root, pairs=[{"query_id": "n0"}]), "pairs.jsonl", 1,
     "'positive_id'", 5),
]


@pytest.mark.parametrize("case, build, filename, line, fragment, kept", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_fails_naming_file_and_line(tmp_path, case, build, filename, line, fragment, kept):
    root = build(tmp_path / "c")
    with pytest.raises(CorpusError) as info:
        load_corpus(root, on_error="fail")
    message = str(info.value)
    assert message.startswith(f"{root / filename}:{line}: "), message
    assert fragment in message
    assert (info.value.path, info.value.line) == (str(root / filename), line)


@pytest.mark.parametrize("case, build, filename, line, fragment, kept", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_skipped_with_counted_warning(tmp_path, case, build, filename, line, fragment, kept):
    root = build(tmp_path / "c")
    with pytest.warns(CorpusWarning) as record:
        corpus = load_corpus(root, on_error="skip")
    messages = [str(w.message) for w in record if issubclass(w.category, CorpusWarning)]
    assert len(messages) == 1, messages  # one summary, not one warning per line
    assert "skipped 1 problem(s)" in messages[0] and f"{root / filename}:{line}: " in messages[0]
    assert fragment in messages[0]
    assert len(corpus) == kept
    if case in ("missing-image", "truncated-jpeg", "text-as-jpeg", "empty-image"):
        assert corpus.get("n4").images == []  # the note survives as text-only; the photo is dropped
    if filename == "qrels.tsv" and case != "qrels-header":
        assert corpus.qrels == {"n0": {"n1": 3, "n2": 1}, "n1": {"n0": 2}}


def test_good_corpus_gives_no_warning(tmp_path, recwarn):
    load_corpus(make_native(tmp_path / "c"), on_error="skip")
    assert not [w for w in recwarn if issubclass(w.category, CorpusWarning)]


def test_unknown_on_error_and_format_are_config_errors(tmp_path):
    root = make_native(tmp_path / "c")
    with pytest.raises(ConfigError, match="on_error"):
        load_corpus(root, on_error="ignore")
    with pytest.raises(ConfigError, match="format"):
        load_corpus(root, format="csv")


def test_not_a_corpus_is_a_clear_error(tmp_path):
    with pytest.raises(CorpusError, match="neither notes.jsonl"):
        load_corpus(tmp_path)
    with pytest.raises(CorpusError, match="no such file"):
        load_corpus(tmp_path / "missing" / "dir" / "x")


def test_full_validation_decodes_photos(tmp_path):
    root = make_native(tmp_path / "c")
    # a JPEG whose header and end marker are intact but whose body is garbage
    data = bytearray(jpeg_bytes(4))
    data[200:-10] = b"\x00" * (len(data) - 210)
    data[:2] = b"\xff\xd8"
    (root / "images" / "n4.jpg").write_bytes(bytes(data))
    assert len(load_corpus(root, validate_images="none")) == 5
    with pytest.raises(CorpusError):
        load_corpus(root, validate_images="full")


def test_write_read_round_trip(tmp_path):
    src = load_corpus(make_native(tmp_path / "src"))
    src.notes[1].images.append(str((tmp_path / "src" / "images" / "n0.jpg").resolve()))  # absolute path
    src.notes[2].title, src.notes[2].tags = "标题 ünïcode", ["话题"]
    out = write_corpus(src, tmp_path / "out")
    back = load_corpus(out)
    assert [n.to_json() | {"images": None} for n in back] == [n.to_json() | {"images": None} for n in src]
    for a, b in zip(src.notes, back.notes):
        assert [src.image_path(a, i).read_bytes() for i in range(len(a.images))] == \
               [back.image_path(b, i).read_bytes() for i in range(len(b.images))]
        assert all(p.startswith("images/") for p in b.images)
    assert back.qrels == src.qrels and back.pairs == src.pairs


def test_write_replaces_corpus_but_refuses_other_folders(tmp_path):
    src = load_corpus(make_native(tmp_path / "src"))
    out = tmp_path / "out"
    write_corpus(src, out)
    (out / "stale.txt").write_text("old")
    write_corpus(src, out)  # an existing corpus is replaced atomically
    assert not (out / "stale.txt").exists() and (out / "notes.jsonl").exists()
    other = tmp_path / "precious"
    other.mkdir()
    (other / "thesis.tex").write_text("keep me")
    with pytest.raises(CorpusError, match="refusing to overwrite"):
        write_corpus(src, other)
    assert (other / "thesis.tex").read_text() == "keep me"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_limit_keeps_first_notes_and_restricts_labels(tmp_path):
    corpus = load_corpus(make_native(tmp_path / "c"), limit=2)
    assert [n.note_id for n in corpus] == ["n0", "n1"]
    assert corpus.qrels == {"n0": {"n1": 3}, "n1": {"n0": 2}} and corpus.pairs == []


def _graded_corpus(tmp_path, n=40):
    rows = ["query_id\tnote_id\tgrade"] + [f"n{q}\tn{(q * 7 + k) % n}\t{k % 4}" for q in range(0, n, 3)
                                           for k in range(1, 6)]
    pairs = [{"query_id": f"n{i}", "positive_id": f"n{(i + 1) % n}", "negative_ids": [f"n{(i + 2) % n}"]}
             for i in range(n)]
    return load_corpus(make_native(tmp_path / "c", n=n, qrels="\n".join(rows) + "\n", pairs=pairs))


def test_split_is_disjoint_deterministic_and_restricts_labels(tmp_path):
    corpus = _graded_corpus(tmp_path)
    train, test = split_corpus(corpus, test_fraction=0.25, seed=3)
    train_ids, test_ids = {n.note_id for n in train}, {n.note_id for n in test}
    assert not train_ids & test_ids and train_ids | test_ids == {n.note_id for n in corpus}
    assert len(test) == 10
    for side, ids in ((train, train_ids), (test, test_ids)):
        for q, row in side.qrels.items():
            assert q in ids and set(row) <= ids and row  # no empty rows
            assert row == {n: g for n, g in corpus.qrels[q].items() if n in ids}
        for p in side.pairs:
            assert {p.query_id, p.positive_id, *p.negative_ids} <= ids
        # every pair of the original whose notes all fall on this side is kept
        assert len(side.pairs) == sum({p.query_id, p.positive_id, *p.negative_ids} <= ids for p in corpus.pairs)
    again = split_corpus(corpus, test_fraction=0.25, seed=3)
    assert [n.note_id for n in again[1]] == [n.note_id for n in test]
    other = split_corpus(corpus, test_fraction=0.25, seed=4)
    assert {n.note_id for n in other[1]} != test_ids


def test_split_rejects_bad_fraction(tmp_path):
    corpus = _graded_corpus(tmp_path, n=6)
    for bad in (0, 1, 1.5, -0.1):
        with pytest.raises(ConfigError, match="test_fraction"):
            split_corpus(corpus, test_fraction=bad)


def test_cache_commit_keeps_a_folder_another_process_finished_first(tmp_path):
    from uninote.data.native import atomic_dir

    final = tmp_path / "entry"
    with atomic_dir(final, replace=False) as tmp:
        (tmp / "notes.jsonl").write_text("mine\n")
        final.mkdir()
        (final / "notes.jsonl").write_text("theirs\n")  # the other process renamed its folder first
    assert (final / "notes.jsonl").read_text() == "theirs\n"
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "failed") as tmp:
            raise RuntimeError("crash mid-write")
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]  # nothing half-written left behind

"""Qilin from the Hub: ``huggingface_hub.snapshot_download`` is faked by a local snapshot folder."""

from __future__ import annotations

import pytest
from data_testkit import jpeg_bytes

from uninote.cli.main import main
from uninote.data import load_corpus
from uninote.data.loaders import detect_format
from uninote.data.problems import CorpusWarning
from uninote.data.qilin import HUB_PATTERNS, HUB_REPO_ID
from uninote.errors import CorpusError

ROWS = [  # note 0: two photos; note 1: one photo present, one missing; note 2: text-only
    {"note_idx": 0, "note_title": "腊肠", "note_content": "好吃 #腊肠[话题]#", "taxonomy1_id": "5ab0",
     "image_path": "['image/part_1/0/a.png' 'image/part_1/0/b.png']", "like_num": 3.0},
    {"note_idx": 1, "note_title": "穿搭", "note_content": "今天 #穿搭[话题]#", "taxonomy1_id": "5ab1",
     "image_path": "['image/part_1/1/c.png' 'image/part_1/1/missing.png']", "like_num": 0.0},
    {"note_idx": 2, "note_title": "旅行", "note_content": "海边", "taxonomy1_id": "5ab2",
     "image_path": "[]", "like_num": 7.0},
    {"note_idx": 3, "note_title": "咖啡", "note_content": "拿铁", "taxonomy1_id": "5ab3",
     "image_path": "['image/part_1/3/d.png']", "like_num": 1.0},
]
PHOTOS = {"image/part_1/0/a.png": 0, "image/part_1/0/b.png": 1, "image/part_1/1/c.png": 2,
          "image/part_1/3/d.png": 3}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UNINOTE_CACHE", str(tmp_path / "cache"))


def _write_table(path, rows=ROWS):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def make_snapshot(root, table="notes/train-00000-of-00001.parquet"):
    """A folder laid out like the assumed release: a notes table (in a subfolder) and image/ at the root."""
    if table:
        _write_table(root / table)
    for rel, seed in PHOTOS.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(jpeg_bytes(seed, fmt="PNG"))
    (root / "README.md").write_text("# Qilin\n", encoding="utf-8")
    return root


@pytest.fixture
def fake_hub(monkeypatch):
    """Route ``snapshot_download`` to ``fake_hub.folder``; every call's arguments land in ``fake_hub.calls``."""
    import huggingface_hub

    class Hub:
        folder = None
        calls: list[dict] = []

    def fake_snapshot_download(repo_id, **kwargs):
        Hub.calls.append({"repo_id": repo_id, **kwargs})
        return str(Hub.folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    return Hub


def _load_quietly(source, **kwargs):
    with pytest.warns(CorpusWarning):  # note 2 is text-only, note 1 misses a photo
        return load_corpus(source, **kwargs)


def test_hub_id_downloads_the_dataset_and_reads_notes_with_snapshot_relative_photos(tmp_path, fake_hub):
    fake_hub.folder = make_snapshot(tmp_path / "snapshot")
    corpus = _load_quietly("THUIR/Qilin", format="qilin", revision="v1.0")
    assert fake_hub.calls == [{"repo_id": "THUIR/Qilin", "repo_type": "dataset", "revision": "v1.0",
                               "allow_patterns": HUB_PATTERNS}]
    assert corpus.name == "Qilin" and [n.note_id for n in corpus] == ["0", "1", "2", "3"]
    photos = {n.note_id: [corpus.image_path(n, i).read_bytes() for i in range(len(n.images))] for n in corpus}
    assert photos == {"0": [jpeg_bytes(0, fmt="PNG"), jpeg_bytes(1, fmt="PNG")],
                      "1": [jpeg_bytes(2, fmt="PNG")], "2": [], "3": [jpeg_bytes(3, fmt="PNG")]}
    assert corpus.get("0").tags == ["腊肠"] and corpus.get("0").body == "好吃"
    assert corpus.get("1").meta["image_paths"] == ["image/part_1/1/c.png", "image/part_1/1/missing.png"]


def test_hub_load_matches_the_local_table_with_the_snapshot_as_image_root(tmp_path, fake_hub):
    fake_hub.folder = make_snapshot(tmp_path / "snapshot")
    local_table = fake_hub.folder / "notes" / "train-00000-of-00001.parquet"
    hub = _load_quietly("THUIR/Qilin", format="qilin")
    local = _load_quietly(local_table, image_root=fake_hub.folder)
    assert fake_hub.calls[0]["revision"] is None  # default: the main branch
    assert [(n.note_id, n.title, n.body, n.tags, n.meta) for n in hub] == \
           [(n.note_id, n.title, n.body, n.tags, n.meta) for n in local]
    assert [[hub.image_path(n, i) for i in range(len(n.images))] for n in hub] == \
           [[local.image_path(n, i) for i in range(len(n.images))] for n in local]


def test_limit_and_on_error_behave_as_for_a_local_table(tmp_path, fake_hub):
    rows = [ROWS[0], {**ROWS[1], "note_idx": 0}, *ROWS[2:]]  # a duplicate id on row 3
    fake_hub.folder = make_snapshot(tmp_path / "snapshot", table=None)
    table = _write_table(fake_hub.folder / "notes.parquet", rows)
    with pytest.raises(CorpusError, match=rf"{table}:3: duplicate note_idx 0 \(first on line 2\)"):
        load_corpus("THUIR/Qilin", format="qilin")
    with pytest.warns(CorpusWarning) as record:
        corpus = load_corpus("THUIR/Qilin", format="qilin", on_error="skip")
    assert any("skipped 1 problem" in str(w.message) for w in record)
    assert [n.note_id for n in corpus] == ["0", "2", "3"]
    corpus = load_corpus("THUIR/Qilin", format="qilin", limit=1)
    assert [n.note_id for n in corpus] == ["0"] and len(corpus.get("0").images) == 2


def test_any_owner_name_id_with_format_qilin_and_detection_of_the_qilin_id(tmp_path, fake_hub):
    fake_hub.folder = make_snapshot(tmp_path / "snapshot")
    corpus = _load_quietly("someone/qilin-mirror", format="qilin")
    assert fake_hub.calls[-1]["repo_id"] == "someone/qilin-mirror" and len(corpus) == 4
    assert detect_format(HUB_REPO_ID) == "qilin" and detect_format("thuir/qilin") == "qilin"
    assert detect_format("ashraq/fashion-product-images-small") == "fashion"
    assert detect_format("someone/qilin-mirror") == "fashion"  # unknown ids keep the fashion default
    assert len(_load_quietly(HUB_REPO_ID, limit=2)) == 2


def test_snapshot_without_a_notes_table_names_the_folder_and_what_it_found(tmp_path, fake_hub):
    fake_hub.folder = make_snapshot(tmp_path / "snapshot", table=None)
    _write_table(fake_hub.folder / "search_train.parquet", [{"query": "q", "note_idx": 1}])
    with pytest.raises(CorpusError, match="no Qilin notes table") as err:
        load_corpus("THUIR/Qilin", format="qilin")
    assert str(err.value).startswith(f"{fake_hub.folder}: ") and "search_train.parquet" in str(err.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    fake_hub.folder = empty
    with pytest.raises(CorpusError, match=rf"^{empty}: no Qilin notes table .*found: none"):
        load_corpus("THUIR/Qilin", format="qilin")


def test_several_notes_tables_are_refused_with_their_names(tmp_path, fake_hub):
    fake_hub.folder = make_snapshot(tmp_path / "snapshot")
    _write_table(fake_hub.folder / "notes_copy.parquet")
    _write_table(fake_hub.folder / "other.parquet", [{"query": "q"}])  # not a notes table: not listed
    with pytest.raises(CorpusError, match="2 tables with Qilin note columns") as err:
        load_corpus("THUIR/Qilin", format="qilin")
    message = str(err.value)
    assert message.startswith(f"{fake_hub.folder}: ") and "notes_copy.parquet" in message
    assert "train-00000-of-00001.parquet" in message and "other.parquet" not in message


def test_a_sharded_notes_table_is_read_shard_by_shard_in_order(tmp_path, fake_hub):
    fake_hub.folder = make_snapshot(tmp_path / "snapshot", table=None)
    _write_table(fake_hub.folder / "notes" / "train-00001-of-00002.parquet", ROWS[2:])
    _write_table(fake_hub.folder / "notes" / "train-00000-of-00002.parquet", ROWS[:2])
    corpus = _load_quietly("THUIR/Qilin", format="qilin")
    assert [n.note_id for n in corpus.notes] == ["0", "1", "2", "3"]
    assert corpus.image_path(corpus.get("3"), 0).read_bytes() == jpeg_bytes(3, fmt="PNG")
    assert [n.note_id for n in _load_quietly("THUIR/Qilin", format="qilin", limit=3).notes] == ["0", "1", "2"]


def test_a_note_repeated_across_shards_is_a_duplicate_naming_both_places(tmp_path, fake_hub):
    fake_hub.folder = make_snapshot(tmp_path / "snapshot", table=None)
    _write_table(fake_hub.folder / "notes" / "part-0.parquet", ROWS[:2])
    second = _write_table(fake_hub.folder / "notes" / "part-1.parquet", [ROWS[0], *ROWS[2:]])
    with pytest.raises(CorpusError, match=rf"{second}:2: duplicate note_idx 0 \(first on part-0.parquet line 2\)"):
        load_corpus("THUIR/Qilin", format="qilin")


def test_local_table_path_does_not_touch_the_hub(tmp_path, fake_hub):
    table = _write_table(tmp_path / "local" / "notes.parquet")
    for rel, seed in PHOTOS.items():
        (tmp_path / "local" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "local" / rel).write_bytes(jpeg_bytes(seed, fmt="PNG"))
    corpus = _load_quietly(table)
    assert fake_hub.calls == [] and corpus.name == "notes" and len(corpus) == 4
    assert corpus.image_path(corpus.get("3"), 0).read_bytes() == jpeg_bytes(3, fmt="PNG")


def test_prepare_cli_takes_the_hub_id_and_revision(tmp_path, fake_hub, capsys):
    fake_hub.folder = make_snapshot(tmp_path / "snapshot")
    with pytest.warns(CorpusWarning):
        assert main(["prepare", "--source", "THUIR/Qilin", "--revision", "abc123", "--out",
                     str(tmp_path / "out")]) == 0
    assert fake_hub.calls[-1]["revision"] == "abc123"
    assert "4 notes, 4 images" in capsys.readouterr().out
    assert load_corpus(tmp_path / "out").get("0").images != []

"""Catalogue search by words: whole words first, then word prefixes, never inside a word."""

from __future__ import annotations

from uninote.data.note import Note
from uninote.service.catalogue import Catalogue, words

NOTES = [
    Note("s1", "Grey sweatshirt", meta={"kind": "sweatshirt"}),
    Note("s2", "Blue shirt", meta={"kind": "shirt", "colour": "blue"}),
    Note("s3", "Blue T-Shirt, cotton", tags=["summer"]),
    Note("s4", "Shirts for work"),
    Note("n7", "Red watch"),
    Note("n70", "Blue watch"),
]


def test_words_are_letter_and_digit_runs_lower_cased():
    assert words("Blue T-Shirt, size_42!") == ["blue", "t", "shirt", "size", "42"]
    assert words("  ") == []


def test_shirt_finds_shirts_not_sweatshirts_whole_words_first():
    found = Catalogue(NOTES).find("shirt")
    assert [n.note_id for n in found.notes] == ["s2", "s3", "s4"]  # s4 by prefix ("shirts"), last
    assert found.total == 3 and found.words == ("shirt",)
    assert [n.note_id for n in Catalogue(NOTES).find("shi").notes] == ["s2", "s3", "s4"]  # not s1
    assert [n.note_id for n in Catalogue(NOTES).find("sweat").notes] == ["s1"]


def test_every_word_must_match_and_prefixes_follow_the_typing():
    cat = Catalogue(NOTES)
    assert [n.note_id for n in cat.find("blue shirt").notes] == ["s2", "s3"]
    assert [n.note_id for n in cat.find("blu wat").notes] == ["n70"]
    assert [n.note_id for n in cat.find("SUMMER").notes] == ["s3"]  # tags, any case


def test_ids_match_whole_first_then_by_prefix():
    found = Catalogue(NOTES).find("n7")
    assert [n.note_id for n in found.notes] == ["n7", "n70"]


def test_no_match_total_and_limit():
    cat = Catalogue(NOTES)
    none = cat.find("xylophone")
    assert none.notes == [] and none.total == 0
    everything = cat.find("", limit=2)
    assert [n.note_id for n in everything.notes] == ["s1", "s2"] and everything.total == len(NOTES)
    limited = cat.find("blue", limit=1)
    assert len(limited.notes) == 1 and limited.total == 3

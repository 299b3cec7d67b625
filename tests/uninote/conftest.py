"""Fixtures shared by the library tests: a fresh feature cache per test and a synthetic corpus."""

import pytest

from uninote.data.native import load_native
from uninote.model.testing import make_synthetic_corpus


@pytest.fixture(autouse=True)
def _fresh_feature_cache(tmp_path, monkeypatch):
    """Each test extracts its own backbone features (no test reuses another's cache)."""
    monkeypatch.setenv("UNINOTE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def synthetic_corpus(tmp_path):
    """``synthetic_corpus(n_notes)``: a native corpus of generated notes, one broken photo."""

    def make(n_notes: int):
        return load_native(make_synthetic_corpus(tmp_path / "corpus", n_notes=n_notes, broken=1))

    return make

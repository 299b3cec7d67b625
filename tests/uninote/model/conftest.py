import pytest

from uninote.data.corpus import load_native
from uninote.model.testing import make_synthetic_corpus


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UNINOTE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def corpus(tmp_path):
    return load_native(make_synthetic_corpus(tmp_path / "corpus", n_notes=24, broken=1))

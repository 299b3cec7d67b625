import pytest


@pytest.fixture
def corpus(synthetic_corpus):
    return synthetic_corpus(24)

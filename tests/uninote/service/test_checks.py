"""Search settings are checked before a search: each bad value is refused with what is accepted."""

from __future__ import annotations

import numpy as np
import pytest

from uninote.errors import UniNoteError
from uninote.service.checks import MAX_K, search_settings

DIMS = [16, 32, 64]


def test_valid_settings_come_back_as_ints_and_none_is_the_full_dim():
    assert search_settings(10, None, DIMS, "note", "note", "exact") == (10, 64)
    assert search_settings(np.int64(3), np.int32(16), DIMS, "region", "image", "local") == (3, 16)
    assert search_settings(MAX_K, 32, DIMS, "text", "text", "global+local") == (MAX_K, 32)


@pytest.mark.parametrize("k, dim, gran, modality, strategy, message", [
    (0, None, "note", "note", "exact", "k must be between 1 and 100, got 0"),
    (MAX_K + 1, None, "note", "note", "exact", "k must be between 1 and 100, got 101"),
    (2.5, None, "note", "note", "exact", "k must be a whole number, got 2.5"),
    (True, None, "note", "note", "exact", "k must be a whole number, got True"),
    (5, 100, "note", "note", "exact", "dim 100 is not served: the model works at 16, 32, 64"),
    (5, 20, "note", "note", "exact", "dim 20 is not served: the model works at 16, 32, 64"),
    (5, "64", "note", "note", "exact", "dim must be a whole number, got '64'"),
    (5, None, "pixel", "note", "exact",
     "unknown granularity 'pixel': expected one of note, text, image, region"),
    (5, None, "note", "audio", "exact", "unknown query modality 'audio': expected one of note, image, text"),
    (5, None, "note", "note", "fast", "unknown strategy 'fast': expected one of exact, adaptive, local, "
                                      "global+local"),
])
def test_bad_settings_are_refused_with_the_reason(k, dim, gran, modality, strategy, message):
    with pytest.raises(UniNoteError) as err:
        search_settings(k, dim, DIMS, gran, modality, strategy)
    assert str(err.value) == message

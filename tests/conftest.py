"""Suite-wide isolation: no test reads or writes the user's caches, database or model versions.

Tests that need their own folders still set these per test; this is the floor under them, so a
test that forgets cannot pass only because a developer's ``~/.cache/uninote`` happens to be warm.
"""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_uninote_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("uninote-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNINOTE_CACHE", str(home / "cache"))
        mp.setenv("UNINOTE_HOME", str(home / "home"))
        mp.setenv("UNINOTE_DB", f"sqlite:///{home / 'annotations.db'}")
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        yield home

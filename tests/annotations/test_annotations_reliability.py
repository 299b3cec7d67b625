"""Crash and concurrency safety: small versions of scripts/annotations_reliability.py's checks."""

from __future__ import annotations

from annotations import reliability


def test_sigkill_mid_stream_loses_no_acknowledged_grade(tmp_path):
    result = reliability.check_kill(tmp_path, rounds=2, kill_after=25)
    assert [r["returncode"] for r in result["rounds"]] == [-9, -9]  # really killed mid-stream
    assert result["acked"] >= 50 and result["lost"] == 0
    assert result["integrity_check"] == "ok"


def test_concurrent_process_and_thread_writers_with_backup(tmp_path):
    r = reliability.check_concurrency(tmp_path, processes=3, threads=2, grades=15, repeat=2, backup=True)
    assert r["errors"] == 0 and r["locked_errors"] == 0, r["error_samples"]
    assert r["submissions"] == 3 * 2 * 15 * 2
    assert r["judgment_rows"] == r["expected_rows"] == 90  # double submissions made no rows
    assert r["history_rows"] == 90 and r["lost"] == 0
    assert r["integrity_check"] == "ok"
    assert r["backup"]["integrity_check"] == "ok" and 0 < r["backup"]["rows_in_copy"] <= 90


def test_missing_acks_detects_a_lost_grade(tmp_path):
    store = reliability.setup_db(tmp_path / "x.db")
    store.submit_grade("w", "q0", "c1", 2)
    acks = [("w", "q0", "c1", 2), ("w", "q0", "c2", 1)]
    assert reliability.missing_acks(store, acks) == [("w", "q0", "c2", 1)]  # the check can fail
    store.close()

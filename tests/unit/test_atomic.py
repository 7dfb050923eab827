import os

import pytest

from fishflow import atomic


def test_write_bytes_replaces_without_leftovers(tmp_path):
    target = tmp_path / "a" / "b.wav"
    atomic.write_bytes(target, b"one")
    atomic.write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["b.wav"]


def test_journal_survives_a_torn_last_line(tmp_path):
    journal = atomic.Journal(tmp_path / "j.jsonl")
    journal.append({"id": "a"})
    with open(journal.path, "a") as handle:
        handle.write('{"id": "b", "tru')  # a kill in the middle of an append
    assert journal.read() == [{"id": "a"}]
    journal = atomic.Journal(journal.path)  # the restarted process
    journal.append({"id": "c"})
    assert journal.read() == [{"id": "a"}, {"id": "c"}]


def test_corruption_before_the_last_line_is_an_error(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(ValueError, match="j.jsonl:2: corrupt"):
        atomic.read_jsonl(path)


def test_replacing_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "cuts.jsonl.gz"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic.replacing(path) as tmp:
        assert tmp.name.endswith("-cuts.jsonl.gz") and tmp.parent == tmp_path
        tmp.write_bytes(b"half")
        raise RuntimeError("writer died")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["cuts.jsonl.gz"]
    with atomic.replacing(path) as tmp:
        tmp.write_bytes(b"new")
    assert path.read_bytes() == b"new" and os.listdir(tmp_path) == ["cuts.jsonl.gz"]

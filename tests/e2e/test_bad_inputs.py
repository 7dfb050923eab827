"""Bad input fails at planning time (before any job), names file and line, and loses nothing."""

import hashlib

import pytest

from tests.helpers import write_jsonl, write_wav
from tests.workflow_runner import assert_ok


def lines_of(project, lang):
    return (project.root / f"{lang}.jsonl").read_text().splitlines()


def set_lines(project, lang, lines):
    write_jsonl(project.root / f"{lang}.jsonl", lines)


def bad_json(p):
    set_lines(
        p,
        "en",
        [*lines_of(p, "en")[:2], '{"id": "x", "text": "unterminated', *lines_of(p, "en")[2:]],
    )
    return "en.jsonl:3: malformed JSON"


def missing_text(p):
    set_lines(p, "de", [*lines_of(p, "de"), '{"id": "de9"}'])
    return "de.jsonl:6: missing 'text'"


def empty_text(p):
    set_lines(p, "de", ['{"id": "de9", "text": ""}', *lines_of(p, "de")])
    return "de.jsonl:1: 'text' is empty"


def non_string_text(p):
    set_lines(p, "en", [*lines_of(p, "en"), '{"id": "en9", "text": ["a"]}'])
    return "en.jsonl:6: 'text' must be a string"


def duplicate_id(p):
    set_lines(p, "en", [*lines_of(p, "en"), '{"id": "en1", "text": "again"}'])
    return "en.jsonl:6: duplicate id 'en1' (first seen on line 2)"


def unsafe_id(p):
    set_lines(p, "en", [*lines_of(p, "en"), '{"id": "../../etc/passwd", "text": "x"}'])
    return "en.jsonl:6: id '../../etc/passwd' is unsafe as a file name"


def unknown_language(p):
    p.config["inputs"]["xx"] = str(write_jsonl(p.root / "xx.jsonl", [{"text": "hm"}]))
    return "language(s) ['xx'] not supported by backend 'demo'"


def unknown_voice(p):
    p.config["voice_assignment"] = "row"
    set_lines(
        p,
        "en",
        [
            '{"id": "a", "text": "x", "voice": "alice"}',
            '{"id": "b", "text": "y", "voice": "carol"}',
        ],
    )
    set_lines(p, "de", ['{"id": "a", "text": "x", "voice": "bob"}'])
    return "en.jsonl:2: unknown voice 'carol'"


def missing_reference(p):
    (p.root / "voices" / "bob.wav").unlink()
    return "bob.wav: voice 'bob': reference audio does not exist"


def invalid_reference(p):
    (p.root / "voices" / "bob.wav").write_bytes(b"RIFF....WAVEjunk")
    return "voice 'bob': reference audio is not readable audio"


def short_reference(p):
    write_wav(p.root / "voices" / "alice.wav", seconds=0.2)
    return "voice 'alice': reference audio is too short (0.20 s < 1.0 s minimum)"


def bad_config(p):
    p.config["generation"]["max_new_tokens"] = 0
    return "config key generation.max_new_tokens: 0 is less than the minimum of 1"


CASES = [
    bad_json,
    missing_text,
    empty_text,
    non_string_text,
    duplicate_id,
    unsafe_id,
    unknown_language,
    unknown_voice,
    missing_reference,
    invalid_reference,
    short_reference,
    bad_config,
]


@pytest.mark.parametrize("breaks", CASES, ids=[case.__name__ for case in CASES])
def test_bad_input_fails_at_planning_time(project, breaks):
    expected = breaks(project)
    result = project.run("-n", timeout=120)
    assert result.returncode != 0
    assert expected in result.stdout, result.stdout[-3000:]
    assert "Traceback" not in result.stdout
    assert not (project.out / "work").exists()


def test_bad_input_after_a_run_corrupts_nothing(project):
    assert_ok(project.run())
    snapshot = {
        p: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in project.out.rglob("*")
        if p.is_file() and "logs" not in p.parts
    }
    duplicate_id(project)
    result = project.run()
    assert result.returncode != 0 and "duplicate id 'en1'" in result.stdout
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in snapshot} == snapshot

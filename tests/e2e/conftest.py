import pytest

from tests.helpers import make_config
from tests.workflow_runner import Project

SENTENCES = {
    "en": [
        "The first sentence of the test.",
        "A second, slightly longer sentence follows here.",
        "Numbers like 42 and 1,024 are read aloud.",
        "Is this a question?",
        "The end!",
    ],
    "de": [
        "Der erste Satz des Tests.",
        "Ein zweiter, etwas längerer Satz folgt hier.",
        "Zahlen wie 42 werden vorgelesen.",
        "Ist das eine Frage?",
        "Das Ende!",
    ],
}
TEXTS = {
    lang: [{"id": f"{lang}{i}", "text": text} for i, text in enumerate(sentences)]
    for lang, sentences in SENTENCES.items()
}


@pytest.fixture
def project(tmp_path) -> Project:
    config = make_config(
        tmp_path,
        TEXTS,
        shard_size=2,
        server={"backoff_s": 0.05, "retries": 2, "startup_timeout_s": 60},
    )
    return Project(root=tmp_path, config=config)

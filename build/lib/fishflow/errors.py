"""Error types whose messages are meant to be read by users as they are."""


class FishflowError(Exception):
    """Base class: an error fishflow explains itself (no traceback needed)."""


class ConfigError(FishflowError):
    """The configuration does not match the schema or names something unusable."""


class InputError(FishflowError):
    """An input file (JSONL, reference audio) is unusable; the message names file and line."""

    def __init__(self, path, line: int | None, message: str):
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line


class ServerError(FishflowError):
    """The TTS server is unreachable, not what it claims to be, or misbehaves."""


class TransientError(ServerError):
    """A failure worth retrying: connection refused/reset, timeout, HTTP 5xx."""


class Unreachable(TransientError):
    """No answer at all (connection refused or reset): the server process may be gone."""


class PermanentError(ServerError):
    """A failure retrying cannot fix: HTTP 4xx, an answer that is not audio."""

"""fishflow: JSONL text to multi-language, multi-voice speech with the Fish Speech server."""

__version__ = "0.1.0"

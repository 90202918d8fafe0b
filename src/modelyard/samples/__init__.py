"""Sample data shipped with the package, so a fresh clone's quick start needs no download.

chat-demo.jsonl was written for this project (not taken from a public data set): 60 short English
chat exchanges about using Modelyard and general knowledge, in the `messages` chat format."""

from __future__ import annotations

from importlib import resources

SAMPLES: dict[str, str] = {
    "chat-demo": "60 chat exchanges (messages format): using Modelyard and general knowledge; "
                 "fine-tunes the demo model in minutes on a CPU",
}


def sample_bytes(name: str) -> bytes:
    """The sample file's content; KeyError for an unknown name."""
    if name not in SAMPLES:
        raise KeyError(name)
    return resources.files(__name__).joinpath(f"{name}.jsonl").read_bytes()

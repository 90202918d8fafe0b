"""Streaming text deltas: a tail that may still become a stop string is held back, the stop string is
never sent, and an incomplete UTF-8 character waits for its next byte."""

from __future__ import annotations

from modelyard.runtime.serve.api import TextTracker


class PieceTokenizer:
    """decode() joins fixed text pieces, one per token id."""

    def __init__(self, pieces: list[str]):
        self.pieces = pieces

    def decode(self, ids, skip_special_tokens=True):
        return "".join(self.pieces[i] for i in ids)


def run(pieces: list[str], stops: list[str]) -> tuple[list[str], TextTracker]:
    tracker = TextTracker(PieceTokenizer(pieces), stops)
    deltas = []
    for n in range(1, len(pieces) + 1):
        deltas.append(tracker.update(list(range(n))))
        if tracker.stopped:
            break
    else:
        deltas.append(tracker.update(list(range(len(pieces))), final=True))
    return deltas, tracker


def test_stop_string_split_over_tokens_is_held_back_and_cut():
    deltas, tracker = run(["hello ", "wor", "ld", " EN", "D more"], ["END"])
    assert "".join(deltas) == "hello world " and tracker.stopped
    assert deltas[3] == " "  # "EN" could start "END": not sent yet


def test_false_alarm_prefix_is_released():
    deltas, tracker = run(["a E", "N", "x"], ["END"])
    assert deltas == ["a ", "", "ENx", ""] and not tracker.stopped


def test_incomplete_character_waits():
    deltas, _ = run(["ok ", "\ufffd", "é"], [])
    assert deltas[1] == "" and "".join(deltas) == "ok \ufffdé"


def test_earliest_of_several_stops_wins():
    deltas, tracker = run(["one, two. three"], [".", ","])
    assert "".join(deltas) == "one" and tracker.stopped

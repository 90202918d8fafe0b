"""`modelyard chat` against the live platform's gateway and replica doubles: one prompt from a
pipe streamed to stdout, and the interactive loop's history, /reset and /exit."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.core.serving import RouteVersion


@pytest.fixture
def chat_service(platform, replicas):
    token = platform.user("carol")
    owner = platform.user_id(token)
    platform.set_routes([platform.entry("assistant", owner, [
        RouteVersion("v1", 1, 100, [platform.replica(replicas["a1"], "base-model")])])])
    return {"MODELYARD_URL": platform.url, "MODELYARD_TOKEN": token}


def test_chat_reads_one_prompt_from_a_pipe_and_streams_the_answer(chat_service, replicas):
    res = CliRunner().invoke(app, ["chat", "assistant", "--system", "be brief", "--max-tokens", "7",
                                   "--temperature", "0.5"], input="hello there\n", env=chat_service)
    assert res.exit_code == 0, res.output
    assert res.stdout == "Hello there\n"
    sent = replicas["a1"].seen[-1].json
    assert sent["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]
    assert sent["max_tokens"] == 7 and sent["temperature"] == 0.5 and sent["stream"] is True
    assert sent["model"] == "base-model"


def test_chat_errors_clearly(chat_service, replicas):
    res = CliRunner().invoke(app, ["chat", "nobody-has-this"], input="hi\n", env=chat_service)
    assert res.exit_code == 1
    assert "404 model_not_found" in res.output
    res = CliRunner().invoke(app, ["chat", "assistant"], input="", env=chat_service)
    assert res.exit_code == 2 and "no prompt" in res.output
    assert replicas["a1"].seen == []


def test_interactive_chat_keeps_history_until_reset(chat_service, replicas):
    res = CliRunner().invoke(app, ["chat", "assistant", "--interactive"],
                             input="first\nsecond\n/reset\nthird\n/exit\nnever sent\n", env=chat_service)
    assert res.exit_code == 0, res.output
    assert res.stdout.count("Hello there") == 3 and "history cleared" in res.stdout
    sent = [s.json["messages"] for s in replicas["a1"].seen]
    assert sent == [
        [{"role": "user", "content": "first"}],
        [{"role": "user", "content": "first"}, {"role": "assistant", "content": "Hello there"},
         {"role": "user", "content": "second"}],
        [{"role": "user", "content": "third"}],
    ]
    # Ctrl-D (end of input) leaves too
    assert CliRunner().invoke(app, ["chat", "assistant", "--interactive"], input="", env=chat_service).exit_code == 0

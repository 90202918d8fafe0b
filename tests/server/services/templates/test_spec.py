"""The template YAML parser: what it honours and what it refuses, with the reason."""

from __future__ import annotations

import pytest

from modelyard.core.errors import BadRequest
from modelyard.server.services.templates import parse_requirements_txt, parse_template_yaml
from tests.server.services.templates.support import SEED_YAML, SEED_YAML_LITERAL


def test_seed_yaml_parses_into_plain_data():
    spec = parse_template_yaml(SEED_YAML.format(index="https://pypi.tuna.tsinghua.edu.cn/simple"))
    assert spec["services"] == [{"name": "qwen1.5-7b-chat:2b34xhrmqwhomjkd", "ports": [3000], "livez": "/livez",
                                 "readyz": "/readyz", "serviceBootupTime": 30.0}]
    assert spec["env"] == {"key": "value", "GREETING": "hello"}
    assert spec["distro"] == ["vim", "coreutils"]
    assert spec["python"]["requirements_txt"] == "./requirements.txt"
    assert spec["python"]["trusted_hosts"] == ["pypi.tuna.tsinghua.edu.cn"]


def test_defaults_and_mapping_env():
    spec = parse_template_yaml("services:\n  - ports: 8080\nenv:\n  A: 1\n")
    s = spec["services"][0]
    assert (s["ports"], s["readyz"], s["livez"], s["serviceBootupTime"]) == ([8080], "/readyz", "/livez", 300.0)
    assert spec["env"] == {"A": "1"} and spec["distro"] == [] and spec["python"]["requirements"] == []


@pytest.mark.parametrize("text, words", [
    (SEED_YAML_LITERAL, "line 4"),
    ("", "yaml is required"),
    ("- a\n- b\n", "must be a mapping"),
    ("services: []\n", "non-empty list"),
    ("services:\n  - name: x\n", "at least one port"),
    ("services:\n  - ports: [0]\n", "not a TCP port"),
    ("services:\n  - ports: [80]\n    serviceBootupTime: -1\n", "serviceBootupTime"),
    ("services:\n  - ports: [80]\n    readyz: healthz\n", "HTTP path"),
    ("services:\n  - ports: [80]\n    grpc: true\n", "grpc"),
    ("services:\n  - ports: [80]\nenv: ['PATH:/x']\n", "set by the platform"),
    ("services:\n  - ports: [80]\nenv: ['1BAD:x']\n", "not a valid variable name"),
    ("services:\n  - ports: [80]\ndistro:\n  packages: 'vim; rm -rf /'\n", "not a package name"),
    ("services:\n  - ports: [80]\npython:\n  conda: yes\n", "conda"),
    ("services:\n  - ports: [80]\npython:\n  extra_index_url: /etc\n", "http(s) URL"),
    ("services:\n  - ports: [80]\n!!python/object:os.system {}\n", "does not parse"),
    ("services: " + "[" * 100_000 + "]" * 100_000 + "\n", "yaml"),
])
def test_bad_yaml_is_refused_with_the_reason(text, words):
    with pytest.raises(BadRequest) as err:
        parse_template_yaml(text)
    assert words in err.value.message


def test_requirements_txt_lines_and_options():
    assert parse_requirements_txt("# c\nfoo==1  # pin\n\nbar>=2\n") == ["foo==1", "bar>=2"]
    with pytest.raises(BadRequest, match="index_url"):
        parse_requirements_txt("--index-url http://x\nfoo\n")

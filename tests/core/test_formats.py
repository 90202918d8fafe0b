"""One reader: every supported format x shape, validated through the dataset service's path and
read through the trainer's reader, gives the same rows row for row."""

from __future__ import annotations

import csv
import json

import pytest

from modelyard.core import formats
from modelyard.core.errors import BadRequest
from modelyard.core.hparams import hparam_dict, hparam_items
from modelyard.runtime import data as D
from modelyard.server.services import datasets

ROWS = {
    "alpaca": [{"instruction": "add 1 and 2", "input": "", "output": "3"},
               {"instruction": "name the color", "input": "sky", "output": "blue"}],
    "prompt": [{"prompt": "capital of France?", "response": "Paris"},
               {"prompt": "2+2?", "response": "4"}],
    "chat": [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
             {"messages": [{"role": "system", "content": "brief"}, {"role": "user", "content": "sky?"},
                           {"role": "assistant", "content": "blue"}]}],
    "sharegpt": [{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hey"}]},
                 {"conversations": [{"from": "human", "value": "sun?"}, {"from": "gpt", "value": "yellow"}]}],
    "text": [{"text": "the first document"}, {"text": "the second document"}],
}
EXPECTED = {"alpaca": ("alpaca", ""), "prompt": ("alpaca", ""), "chat": ("chat", "messages"),
            "sharegpt": ("chat", "sharegpt"), "text": ("text", "")}
FORMATS = ["jsonl", "ndjson", "json", "csv", "tsv", "parquet", "txt", "md"]


def _write(path, fmt, rows):
    if fmt in ("jsonl", "ndjson"):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "json":
        path.write_text(json.dumps(rows, indent=1))
    elif fmt in ("csv", "tsv"):
        keys = list(rows[0])
        with path.open("w", newline="") as f:
            w = csv.writer(f, delimiter="\t" if fmt == "tsv" else ",")
            w.writerow(keys)
            for r in rows:
                w.writerow([json.dumps(r[k]) if isinstance(r[k], list) else r[k] for k in keys])
    elif fmt == "parquet":
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    else:  # txt / md: one text per line
        path.write_text("".join(r["text"] + "\n\n" for r in rows))  # blank lines between are skipped


CASES = [(fmt, shape) for fmt in FORMATS for shape in ROWS if fmt not in ("txt", "md") or shape == "text"]


@pytest.mark.parametrize("fmt,shape", CASES)
def test_dataset_validation_and_trainer_read_the_same_rows(tmp_path, fmt, shape):
    rows = ROWS[shape]
    path = tmp_path / f"{shape}.{fmt}"
    _write(path, fmt, rows)
    assert datasets.file_format(path) == formats.SUPPORTED[f".{fmt}"]
    # the dataset service's path: every row located and validated (what build_version runs)
    validated = list(datasets.validate_file(path, f"up/{path.name}"))
    assert [(s, c) for _, _, s, c in validated] == [EXPECTED[shape]] * len(rows)
    assert [r for _, r, _, _ in validated] == rows
    # the trainer's reader
    assert D.read_all([path]) == rows == list(datasets.read_rows(path))
    # and the trainer turns them into conversations / texts without complaint
    for r in rows:
        if shape == "text":
            assert D.text_of(r) == r["text"]
        else:
            assert D.to_messages(r, EXPECTED[shape][0])[-1]["role"] == "assistant"


def test_same_errors_with_file_and_line(tmp_path):
    bad = tmp_path / "t.jsonl"
    bad.write_text(json.dumps(ROWS["alpaca"][0]) + "\n{not json\n")
    with pytest.raises(formats.FormatError, match=r"t\.jsonl line 2: invalid JSON") as exc:
        list(datasets.validate_file(bad))
    assert exc.value.code == "invalid_dataset" and exc.value.details["line"] == 2
    with pytest.raises(D.DataError, match=r"t\.jsonl line 2: invalid JSON"):
        D.read_all([bad])
    miss = tmp_path / "m.jsonl"
    miss.write_text(json.dumps({"prompt": "p", "completion": "c"}) + "\n" + json.dumps({"prompt": "p"}) + "\n")
    with pytest.raises(formats.FormatError, match=r"m\.jsonl line 2: missing 'output'"):
        list(datasets.validate_file(miss))
    weird = tmp_path / "w.csv"
    weird.write_text("question,answer\nq,a\n")
    with pytest.raises(formats.FormatError, match="cannot tell the dataset's shape") as exc:
        list(datasets.validate_file(weird))
    assert exc.value.code == "unknown_shape"
    with pytest.raises(formats.FormatError) as exc:
        formats.file_format(tmp_path / "x.pdf")
    assert exc.value.code == "unsupported_format"
    (tmp_path / "x.pdf").write_text("x")
    with pytest.raises(D.DataError, match="unsupported file type"):
        D.read_all([tmp_path / "x.pdf"])


def test_folder_scans_skip_docs_and_hidden_files(tmp_path):
    assert formats.is_data_file(tmp_path / "train.md") and formats.is_data_file(tmp_path / "a.tsv")
    for name in ("README.md", "readme.txt", "LICENSE.txt", ".hidden.jsonl", "notes.pdf"):
        assert not formats.is_data_file(tmp_path / name), name


def test_jobs_detect_shape_uses_the_same_rules(tmp_path):
    from modelyard.server.services.jobs import resolve

    for shape, rows in ROWS.items():
        p = tmp_path / f"{shape}.jsonl"
        _write(p, "jsonl", rows)
        assert resolve.detect_shape([str(p)]) == EXPECTED[shape][0]
    t = tmp_path / "corpus.md"
    _write(t, "md", ROWS["text"])
    assert resolve.detect_shape([str(t)]) == "text"
    w = tmp_path / "w.jsonl"
    w.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    with pytest.raises(BadRequest, match="cannot tell the shape"):
        resolve.detect_shape([str(w)])


def test_one_hyperparameter_parser():
    seed = [{"name": "learning_rate", "value": "1e-4"}, {"name": "", "value": ""}, {},
            {"name": " epochs ", "value": 2, "description": "x"}]
    assert hparam_items(seed) == [("learning_rate", "1e-4"), ("epochs", 2)]
    assert hparam_dict(json.dumps(seed)) == {"learning_rate": "1e-4", "epochs": 2}
    assert hparam_dict({"a": 1}) == {"a": 1} and hparam_dict(None) == {} and hparam_dict("") == {}
    for bad in ("{nope", [1], [{"value": 1}], 5):
        with pytest.raises(BadRequest) as exc:
            hparam_items(bad, "fineTuneHyperParameters")
        assert exc.value.code == "invalid_hyperparameter" and "fineTuneHyperParameters" in exc.value.message
    from modelyard.runtime import hparams
    from modelyard.server.services.jobs import resolve

    assert hparams._items(seed, "x") == hparam_items(seed) and resolve._as_dict(seed) == hparam_dict(seed)

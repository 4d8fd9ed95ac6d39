"""Issue 12 item 6: a local path always wins, a missing one is "not found" at once, and a hub id
that cannot be fetched (offline, or the hub unreachable) fails in well under a second."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import pytest
import yaml

from lorakit.cli import main
from lorakit.errors import LorakitError
from lorakit.model_sources import resolve_model
from tiny_assets import classification_rows, make_model, write_jsonl

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("resolution") / "bert", "bert")


def config_beside_model(tmp_path: Path, bert: Path, model: str) -> Path:
    """project/cfg.yaml naming ``model`` (written relative to project/) and project/train.jsonl."""
    project = tmp_path / "project"
    shutil.copytree(bert, project / "models" / "bert")
    write_jsonl(project / "train.jsonl", classification_rows(16, 0))
    cfg = project / "cfg.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "model": model,
                "task": "classification",
                "data": {"train": str(project / "train.jsonl"), "max_length": 16},
                "lora": {"r": 2, "alpha": 16, "dropout": 0.05, "targets": ["query"]},
                "train": {"max_steps": 1, "batch_size": 8, "eval_every": None, "save_every": None},
                "output_dir": str(tmp_path / "out"),
            }
        )
    )
    return cfg


def test_local_folder_without_dot_slash_wins_from_any_directory(
    tmp_path: Path, bert: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    cfg = config_beside_model(tmp_path, bert, "models/bert")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["train", str(cfg)]) == 0, capsys.readouterr().err
    task = (tmp_path / "out" / "adapter" / "lorakit_task.json").read_text()
    assert str(tmp_path / "project" / "models" / "bert") in task
    monkeypatch.chdir(tmp_path / "project")  # from the config's folder the plain path works too
    assert resolve_model("models/bert").path == str(tmp_path / "project" / "models" / "bert")


@pytest.mark.parametrize(
    "spec", ["./models/nope", "models/nope", "models/bert/", "~/no/such/model", "x.gguf"]
)
def test_missing_path_is_not_found_at_once(
    spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bert: Path
) -> None:
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # a path must not reach the hub at all
    start = time.perf_counter()
    with pytest.raises(LorakitError, match="not found"):
        resolve_model(spec)
    assert time.perf_counter() - start < 0.5


def test_offline_hub_id_fails_fast_with_a_clear_message(
    tmp_path: Path, bert: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    cfg = config_beside_model(tmp_path, bert, "someone/not-cached-model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    assert main(["train", str(cfg)]) == 2
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    assert "'someone/not-cached-model' is not a local folder" in err
    assert "not in the Hugging Face cache" in err and "HF_HUB_OFFLINE is set" in err
    assert elapsed < 1.0, elapsed


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_hub_fails_fast_without_retries(
    tmp_path: Path, bert: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    cfg = config_beside_model(tmp_path, bert, "someone/not-cached-model")
    for var in (
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ):
        monkeypatch.delenv(var, raising=False)
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    start = time.perf_counter()
    assert main(["train", str(cfg)]) == 2
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    assert f"{endpoint} cannot be reached to download it" in err and "Traceback" not in err
    assert elapsed < 1.0, elapsed


def test_seq2seq_example_offline_fails_fast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(ROOT)
    start = time.perf_counter()
    code = main(["train", str(ROOT / "examples" / "seq2seq_t5.yaml"), f"output_dir={tmp_path / 'out'}"])
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    assert code == 2
    assert "'google-t5/t5-small' is not a local folder" in err and "HF_HUB_OFFLINE is set" in err
    assert elapsed < 1.0, elapsed

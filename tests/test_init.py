"""A folder is enough: `indexer init FOLDER` writes a commented config in the user's config
directory (its index in the data directory, never inside the folder), and every command that takes
a config takes the folder itself, making that config the first time and reusing it after."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from indexer.config import load_config
from tests.adversarial.helpers import assert_one_paragraph_error, cli, write_docs


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    config_dir, data_dir = tmp_path / "user-config", tmp_path / "user-data"
    monkeypatch.setenv("INDEXER_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("INDEXER_DATA_DIR", str(data_dir))
    monkeypatch.delenv("INDEXER_MODEL", raising=False)
    return config_dir, data_dir


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    return write_docs(tmp_path / "my notes")


def files_in(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


def test_init_writes_a_valid_commented_config_outside_the_folder(
    dirs: tuple[Path, Path], notes: Path
) -> None:
    config_dir, data_dir = dirs
    before = files_in(notes)
    result = cli("init", str(notes))
    assert result.returncode == 0, result.stderr
    written = list(config_dir.glob("*.yaml"))
    assert len(written) == 1 and written[0].name.startswith("my-notes-")
    config = load_config(written[0])
    assert config.data.input_dir == notes.resolve()
    persist = config.vector_store.persist_dir
    assert persist is not None and persist.is_relative_to(data_dir)
    assert not persist.is_relative_to(notes)
    assert config.embedding.model == "default"
    assert config.retrieval.mode == "hybrid"
    assert config.llm.provider == "llama_cpp" and str(config.llm.model_path) == "bundled:smollm2"
    text = written[0].read_text()
    # Commented: each section says what it is for.
    assert sum(line.lstrip().startswith("#") for line in text.splitlines()) >= 8
    assert "INDEXER_MODEL" in text
    # The next three commands, naming the folder.
    commands = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("indexer ")]
    assert [c.split()[1] for c in commands] == ["build", "query", "chat"]
    assert all(str(notes) in c for c in commands)
    assert str(written[0]) in result.stdout and str(persist) in result.stdout
    assert files_in(notes) == before  # nothing written inside the documents folder


def test_init_reads_indexer_model(
    dirs: tuple[Path, Path], notes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("init", str(notes)).returncode == 0
    model = notes.parent / "mine.gguf"
    monkeypatch.setenv("INDEXER_MODEL", str(model))
    (config,) = dirs[0].glob("*.yaml")
    assert load_config(config).llm.model_path == model


def test_init_keeps_an_existing_config_and_force_rewrites_it(dirs: tuple[Path, Path], notes: Path) -> None:
    assert cli("init", str(notes)).returncode == 0
    (config,) = dirs[0].glob("*.yaml")
    config.write_text(config.read_text().replace("top_k: 3", "top_k: 5"))
    again = cli("init", str(notes))
    assert again.returncode == 0 and "exists already" in again.stdout
    assert load_config(config).query.top_k == 5
    assert cli("init", str(notes), "--force").returncode == 0
    assert load_config(config).query.top_k == 3
    assert len(list(dirs[0].glob("*.yaml"))) == 1


def test_init_config_option_writes_there(dirs: tuple[Path, Path], notes: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "notes.yaml"
    result = cli("init", str(notes), "--config", str(target))
    assert result.returncode == 0, result.stderr
    assert load_config(target).data.input_dir == notes.resolve()
    assert not dirs[0].exists()
    assert f"indexer query {target}" in result.stdout  # the folder alone would not find this file


def test_two_folders_of_one_name_get_two_configs(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    for parent in ("a", "b"):
        assert cli("init", str(write_docs(tmp_path / parent / "notes"))).returncode == 0
    configs = sorted(dirs[0].glob("notes-*.yaml"))
    assert len(configs) == 2
    indexes = {load_config(c).vector_store.persist_dir for c in configs}
    assert len(indexes) == 2


def test_init_refuses_what_is_not_a_folder(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    assert_one_paragraph_error(cli("init", str(tmp_path / "missing")), "no such folder")
    file = tmp_path / "a.txt"
    file.write_text("text")
    assert_one_paragraph_error(cli("init", str(file)), "is a file, not a folder")
    assert not dirs[0].exists()


def test_init_refuses_an_index_inside_the_folder(
    tmp_path: Path, notes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The user's data directory inside the folder (e.g. `indexer init ~`).
    monkeypatch.setenv("INDEXER_CONFIG_DIR", str(tmp_path / "user-config"))
    monkeypatch.setenv("INDEXER_DATA_DIR", str(notes / ".local" / "share"))
    assert_one_paragraph_error(cli("init", str(notes)), "INDEXER_DATA_DIR", "inside the folder")
    assert not (tmp_path / "user-config").exists()


def test_a_folder_is_a_config_for_config_and_status(dirs: tuple[Path, Path], notes: Path) -> None:
    shown = cli("config", str(notes))
    assert shown.returncode == 0, shown.stderr
    assert "made a config" in shown.stderr
    assert yaml.safe_load(shown.stdout)["data"]["input_dir"] == str(notes.resolve())
    status = cli("status", str(notes))
    assert status.returncode == 0, status.stderr
    assert "made a config" not in status.stderr  # reused
    assert "No index yet" in status.stdout  # status reports; it never builds
    assert not dirs[1].exists()


def test_query_on_a_fresh_folder_builds_then_answers_and_reuses(dirs: tuple[Path, Path], notes: Path) -> None:
    config_dir, data_dir = dirs
    before = files_in(notes)
    first = cli("query", str(notes), "How often is the desiccant replaced?", "--retrieve-only")
    assert first.returncode == 0, first.stderr
    assert "made a config" in first.stderr and "building it first" in first.stderr
    assert "mast.txt" in first.stdout.split("Sources:")[1].splitlines()[1]
    (config,) = config_dir.glob("*.yaml")
    persist = load_config(config).vector_store.persist_dir
    assert persist is not None and persist.is_relative_to(data_dir)
    manifest = (persist / "indexer-manifest.json").read_bytes()

    second = cli("query", str(notes), "Which frequency does the mast use?", "--retrieve-only", "--json")
    assert second.returncode == 0, second.stderr
    assert "made a config" not in second.stderr and "building" not in second.stderr
    assert second.json()["sources"][0]["file"] == "radio.md"
    assert list(config_dir.glob("*.yaml")) == [config]
    assert (persist / "indexer-manifest.json").read_bytes() == manifest  # the index as it is
    assert files_in(notes) == before


def test_build_and_status_on_a_folder(dirs: tuple[Path, Path], notes: Path) -> None:
    built = cli("build", str(notes), "--json")
    assert built.returncode == 0, built.stderr
    assert built.json()["documents"] == 3
    status = cli("status", str(notes), "--json")
    assert status.returncode == 0, status.stderr
    assert status.json()["up_to_date"] is True
    (notes / "new.txt").write_text("The anemometer is calibrated every spring.\n")
    assert cli("status", str(notes), "--json").json()["new"] == ["new.txt"]
    assert cli("build", str(notes), "--json").json()["added"] == 1


def test_chat_on_a_fresh_folder_builds_first(dirs: tuple[Path, Path], notes: Path) -> None:
    from typer.testing import CliRunner

    from indexer.cli import app

    result = CliRunner().invoke(
        app, ["chat", str(notes), "--set", "llm.provider=none"], input="desiccant\n/exit\n"
    )
    assert result.exit_code == 0, result.stderr
    assert "building it first" in result.stderr
    assert "mast.txt" in result.stdout


def test_eval_takes_a_folder(dirs: tuple[Path, Path], notes: Path) -> None:
    # The folder stands for its config; the config alone still needs its questions.
    assert cli("init", str(notes)).returncode == 0
    result = cli("eval", str(notes))
    assert_one_paragraph_error(result, "is a config", "--dataset")
    assert "config file not found" not in result.stderr
    assert len(list(dirs[0].glob("*.yaml"))) == 1

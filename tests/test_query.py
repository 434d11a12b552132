"""`saetui query`: golden output per format, read-only refusal, errors in one line, SQL from stdin, and no heavy
imports."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from saetui.commands.main import main
from saetui.store.connection import connect
from saetui.store.writer import ImageRecord, IndexWriter

GOLDEN = Path(__file__).parent / "golden"
QUERY = (
    "SELECT a.image_id, i.label, a.token, a.feature, a.value, e.explained_variance "
    "FROM activations a JOIN images i USING (image_id) JOIN token_errors e USING (image_id, token) ORDER BY ALL"
)
GOLDEN_FILES = {"table": "query_table.txt", "csv": "query.csv", "json": "query.json", "jsonl": "query.jsonl"}


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixed database of build_fixed_db in a temporary folder."""
    return build_fixed_db(tmp_path_factory.mktemp("query") / "fixed.duckdb")


def build_fixed_db(path: Path) -> Path:
    """A small fixed database: 3 images x 2 tokens x k = 3, labels that need quoting, values that need care."""
    settings = {"model_id": "tiny", "layer": 1, "n_features": 16, "k": 3, "tokens": "all", "d_in": 4}
    labels = ["tabby, cat", 'say "hi"', None]
    images = [ImageRecord(i, f"/img/{i}.png", labels[i], 32, 24, f"{i:064x}", i, b"\xff\xd8\xff") for i in range(3)]
    features = np.array([[[3, 1, 15], [0, 2, 4]], [[7, 8, 9], [1, 3, 5]], [[15, 14, 13], [6, 0, 11]]])
    values = np.array(
        [[[0.1, -2.5, 0.0], [12.75, 1e-05, 3.3333333]], [[1, 2, 3], [4, 5, 6]], [[-0.5, 0.25, 7], [8, 9, 1e6]]],
        dtype=np.float32,
    )
    sse = np.array([[1, 2], [0.5, 0], [3, 4]], np.float32)
    total = np.array([[4, 4], [2, 0], [10, 8]], np.float32)
    with IndexWriter.open(path, settings, source="/img", source_items=3) as writer:
        writer.write_batch(images, np.arange(2), features, values, sse, total)
        writer.finish_run()
    return path


def run_query(capsysbinary: pytest.CaptureFixture[bytes], *args: str) -> tuple[int, bytes, str]:
    """Run `saetui query ARGS` in this process: exit code, stdout bytes, stderr text."""
    code = main(["query", *args])
    captured = capsysbinary.readouterr()
    return code, captured.out, captured.err.decode()


@pytest.mark.parametrize("fmt", sorted(GOLDEN_FILES))
def test_each_format_matches_its_golden_file(db: Path, fmt: str, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """stdout carries exactly the golden output and stderr stays empty."""
    code, out, err = run_query(capsysbinary, QUERY, "--db", str(db), "--format", fmt)
    assert (code, err) == (0, "")
    assert out == (GOLDEN / GOLDEN_FILES[fmt]).read_bytes()


@pytest.mark.parametrize("fmt", [*sorted(GOLDEN_FILES), "parquet"])
def test_output_file_holds_the_same_result(
    db: Path, fmt: str, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """-o FILE writes what stdout would get (parquet: the same rows) and nothing reaches stdout."""
    target = tmp_path / f"out.{fmt}"
    code, out, err = run_query(capsysbinary, QUERY, "--db", str(db), "-f", fmt, "-o", str(target))
    assert (code, out, err) == (0, b"", "")
    if fmt != "parquet":
        assert target.read_bytes() == (GOLDEN / GOLDEN_FILES[fmt]).read_bytes()
        return
    sql = f"SELECT * FROM read_parquet('{target}')"
    code, out, _ = run_query(capsysbinary, sql, "--db", str(db), "-f", "jsonl", "--allow-files")
    assert code == 0 and out == (GOLDEN / GOLDEN_FILES["jsonl"]).read_bytes()


def test_parquet_on_stdout_is_a_parquet_file(db: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """With stdout not a terminal, parquet bytes go there."""
    code, out, _ = run_query(capsysbinary, "SELECT count(*) AS n FROM activations", "--db", str(db), "-f", "parquet")
    assert code == 0 and out[:4] == b"PAR1" and out[-4:] == b"PAR1"


def test_parquet_refuses_a_terminal(
    db: Path, capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Binary output to a terminal is a usage error."""
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, out, err = run_query(capsysbinary, "SELECT 1", "--db", str(db), "-f", "parquet")
    assert (code, out) == (2, b"")
    assert err == "saetui: error: parquet output is binary (write it to a file with -o FILE, or redirect stdout)\n"


def test_count_of_activations(db: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """The acceptance query prints the number of stored pairs."""
    code, out, _ = run_query(capsysbinary, "select count(*) from activations", "--db", str(db), "-f", "csv")
    assert code == 0 and out == b"count_star()\n18\n"


@pytest.mark.parametrize(
    "sql",
    [
        "drop table images",
        "delete from images",
        "update images set label = 'x'",
        "create table t as select 1",
        "insert into skipped values ('a', 'b', 1, 'a', 1, NULL)",
    ],
)
def test_writes_fail_and_change_nothing(db: Path, sql: str, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """A statement that would write exits 5 with one line saying query is read-only; the tables stay intact."""
    code, out, err = run_query(capsysbinary, sql, "--db", str(db))
    assert (code, out) == (5, b"")
    assert err.startswith("saetui: error: saetui query is read-only: ") and err.count("\n") == 1
    con = connect(db)
    assert con.execute("SELECT count(*), count(label) FROM images").fetchall() == [(3, 2)]
    assert con.execute("SELECT count(*) FROM skipped").fetchall() == [(0,)]
    con.close()


def test_bad_sql_gives_duckdb_message_in_one_line(db: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """Syntax and binder errors: DuckDB's words on one stderr line, exit 5, nothing on stdout."""
    code, out, err = run_query(capsysbinary, "selec 1", "--db", str(db))
    assert (code, out, err) == (5, b"", 'saetui: error: Parser Error: syntax error at or near "selec"\n')
    code, out, err = run_query(capsysbinary, "select nope from images", "--db", str(db))
    assert (code, out) == (5, b"") and err.count("\n") == 1
    assert 'Referenced column "nope" not found' in err and "Candidate bindings" in err


def test_sql_from_stdin(db: Path, capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    """'-' or no argument reads the SQL from stdin; several statements print the last one's result."""
    for args in (["-"], []):
        monkeypatch.setattr(sys, "stdin", io.StringIO("select 41; select count(*) + 39 as n from images;"))
        code, out, _ = run_query(capsysbinary, *args, "--db", str(db), "-f", "jsonl")
        assert (code, out) == (0, b'{"n":42}\n')


def test_missing_sql_and_database(
    db: Path, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No SQL on a terminal is a usage error; an empty statement too; a missing database is exit 3."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    code, _, err = run_query(capsysbinary, "--db", str(db))
    assert code == 2 and err.startswith("saetui: error: no SQL given")
    code, _, err = run_query(capsysbinary, "  ", "--db", str(db))
    assert code == 2 and err.startswith("saetui: error: the SQL is empty")
    code, _, err = run_query(capsysbinary, "select 1", "--db", str(tmp_path / "none.duckdb"))
    assert code == 3 and "does not exist" in err


def test_default_database_comes_from_the_environment(
    db: Path, capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --db the query reads $SAETUI_DB."""
    monkeypatch.setenv("SAETUI_DB", str(db))
    code, out, _ = run_query(capsysbinary, "select count(*) as n from images", "-f", "csv")
    assert (code, out) == (0, b"n\n3\n")


def test_table_shows_at_most_a_thousand_rows(db: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """A huge result in table format stops at 1,000 rows and says so on stderr; csv gives every row."""
    code, out, err = run_query(capsysbinary, "select range as i from range(1500)", "--db", str(db))
    lines = out.decode().splitlines()
    assert code == 0 and lines[:3] == ["  i", "---", "  0"] and len(lines) == 2 + 1000
    assert err.startswith("saetui: showing the first 1,000 rows;")
    code, out, err = run_query(capsysbinary, "select range as i from range(1500)", "--db", str(db), "-f", "csv")
    assert len(out.splitlines()) == 1501 and err == ""


def test_json_floats_read_back_to_the_stored_float32(db: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """JSON prints float32 values in their shortest form, which parses back to the exact stored value."""
    code, out, _ = run_query(
        capsysbinary, "select value from activations order by value", "--db", str(db), "-f", "json"
    )
    parsed = [row["value"] for row in json.loads(out)]
    con = connect(db)
    stored = [v for (v,) in con.execute("select value from activations order by value").fetchall()]
    con.close()
    assert code == 0 and np.array_equal(np.float32(parsed), np.float32(stored)) and 0.1 in parsed


def test_query_imports_no_heavy_library(db: Path) -> None:
    """Running a query through the CLI entry point leaves torch, open_clip, textual and textual_image unimported."""
    code = (
        "import sys\n"
        "from saetui.commands.main import main\n"
        f"assert main(['query', 'select count(*) from activations', '--db', {str(db)!r}]) == 0\n"
        "print([m for m in ('torch', 'open_clip', 'textual', 'textual_image') if m in sys.modules])\n"
    )
    env = {**os.environ, "SAETUI_DEBUG": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


def test_copy_to_a_file_fails_in_one_line_and_writes_nothing(
    db: Path, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """COPY ... TO, file reads and ATTACH are refused by default; nothing appears on disk."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.csv").write_text("x\n1\n2\n")
    for sql in (
        "COPY (SELECT 1) TO 'x.csv'",
        "COPY images TO 'x.parquet' (FORMAT parquet)",
        "SELECT * FROM read_csv('data.csv')",
        "SELECT * FROM read_text('/etc/hostname')",
        "ATTACH 'new.duckdb' AS other",
        "SET enable_external_access = true",
    ):
        code, out, err = run_query(capsysbinary, sql, "--db", str(db))
        assert code == 5 and out == b"", sql
        assert len(err.strip().splitlines()) == 1 and err.startswith("saetui: error:"), err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data.csv"]
    code, out, err = run_query(capsysbinary, "COPY (SELECT 1) TO 'x.csv'", "--db", str(db))
    assert "sees the database only" in err and "-o FILE" in err


def test_allow_files_reads_but_never_writes(
    db: Path, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--allow-files lets read_csv join a file with the database; COPY and ATTACH stay refused, -o still works."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.csv").write_text("image_id\n0\n2\n")
    sql = "SELECT i.image_id, i.path FROM images i JOIN read_csv('keep.csv') k USING (image_id) ORDER BY 1"
    code, out, err = run_query(capsysbinary, sql, "--db", str(db), "--allow-files", "-f", "csv")
    assert (code, err) == (0, "")
    assert out == b"image_id,path\n0,/img/0.png\n2,/img/2.png\n"
    for refused in ("COPY (SELECT 1) TO 'x.csv'", "SELECT 1; ATTACH 'new.duckdb' AS other"):
        code, out, err = run_query(capsysbinary, refused, "--db", str(db), "--allow-files")
        assert code == 5 and "may not write files" in err, err
    code, _, err = run_query(
        capsysbinary, "SELECT 42 AS x", "--db", str(db), "-o", str(tmp_path / "r.csv"), "-f", "csv"
    )
    assert code == 0, err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["keep.csv", "r.csv"]
    assert (tmp_path / "r.csv").read_text() == "x\n42\n"

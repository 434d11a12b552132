"""The database schema: user-facing tables and views, and the compact physical table behind `activations`.

Physical layout, chosen by measurement (bench/storage.py: synthetic codes with realistic statistics written through
IndexWriter, 257 tokens x k = 32 of 65,536 features, 96 px JPEG thumbnails, DuckDB 2.0):

    bytes per image: 47,978 at 2,000 images, 47,056 at 10,000 (target 48 KB; dense float32 would be 1 MB)
      feature_values 27.1 KB (26.3 bits/value)   feature_keys 14.8 KB (14.4 bits/key)   sse + total_ss 1.7 KB
      token 0.4 KB   thumbnail 2.6 KB   path, label, hash, ... 0.2 KB

* `token_codes` holds ONE ROW PER STORED TOKEN with lists: image_id, token, `feature_keys UINTEGER[]`,
  `feature_values FLOAT[]`, sse, total_ss. image_id and token then cost almost nothing; a long
  image_id/token/feature/value table measured 52-73 KB per image (its token column alone took 2.4 bits per pair).
  Lists (schema 3) hold any number of pairs per token, so ReLU SAEs store every active latent; fixed-size ARRAYs
  (schema 2, TopK only) measured the same size and are still read.
* Values stay exact float32. DuckDB picks ALPRD (26.3 bits); ALP gave 33, RLE 48, a split into exponent and
  mantissa columns 28.9, and per-token power-of-two rescaling or any sort order no gain: the 23 mantissa bits of a
  float32 matmul output are noise. DuckDB has no zstd or dictionary codec for numbers.
* Features: a USMALLINT column stays uncompressed (16 bits): no integer codec of DuckDB beats 16 bits on ids spread
  over 0..65,535. So the writer sorts each token's pairs by feature and stores keys `(row_serial << feature_bits) |
  feature`, row_serial = image_id x tokens-per-image + the token's position, kept below 2^31 (DuckDB's delta
  bit-packing needs the signed range: full 32-bit keys measured 18.3 bits). The column then ascends, delta
  bit-packing stores gaps between neighbouring features: 14.4 bits (64-bit keys: 15.3). The views mask the feature
  back out; nothing reads the keys directly.
* Rows go in image order, so DuckDB's zone maps on image_id find one image's rows without an index (one image's
  8,224 activations through the view: ~6-15 ms on a busy 2-core machine).
* The writer checkpoints itself every few row groups (writer.CHECKPOINT_ROWS): with DuckDB's default 16 MiB
  auto-checkpoint, re-written partial row groups left a third of the file as free blocks (80 KB per image).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np

SCHEMA_VERSION = 3  # 3: codes are lists (any number of pairs per token); runs record family, hook and grid
# 2: images and skipped carry item_key, the source's stable identity of each item

# The runs table: every setting the index engine may record, with its SQL type.
RUN_COLUMNS: dict[str, str] = {
    "run_id": "INTEGER PRIMARY KEY",
    "status": "VARCHAR NOT NULL",
    "started_at": "TIMESTAMP",
    "finished_at": "TIMESTAMP",
    "source": "VARCHAR NOT NULL",
    "source_items": "BIGINT",
    "model_id": "VARCHAR",
    "pretrained": "VARCHAR",
    "model_revision": "VARCHAR",
    "layer": "INTEGER",
    "hook": "VARCHAR",
    "grid_rows": "INTEGER",
    "grid_cols": "INTEGER",
    "sae_family": "VARCHAR",
    "sae_name": "VARCHAR",
    "sae_repo": "VARCHAR",
    "sae_file": "VARCHAR",
    "sae_revision": "VARCHAR",
    "sae_checkpoint": "BIGINT",
    "d_in": "INTEGER",
    "n_features": "INTEGER NOT NULL",
    "k": "INTEGER NOT NULL",
    "activation": "VARCHAR",
    "normalisation": "VARCHAR",
    "keep_top": "INTEGER",
    "input_mean": "DOUBLE[]",
    "input_scale": "DOUBLE",
    "approximate": "VARCHAR",
    "tokens": "VARCHAR NOT NULL",
    "precision": "VARCHAR",
    "device": "VARCHAR",
    "batch_size": "INTEGER",
    "mean": "DOUBLE[3]",
    "std": "DOUBLE[3]",
    "preprocess_source": "VARCHAR",
    "preprocess_reference": "VARCHAR",
    "image_size": "INTEGER",
    "standardise": "BOOLEAN",
    "embeddings": "BOOLEAN",
    "saetui_version": "VARCHAR",
    "torch_version": "VARCHAR",
    "open_clip_version": "VARCHAR",
    "duckdb_version": "VARCHAR",
}

# Tables and views every saetui database has once a writer created it.
TABLES = ("store_meta", "runs", "images", "token_codes", "batch_moments", "skipped", "image_embeddings")
VIEWS = ("activations", "token_errors")


@dataclass(frozen=True)
class CodeLayout:
    """How one database packs its (feature, value) pairs: the most pairs per token and the feature-key encoding."""

    k: int  # the most pairs a token keeps (TopK k or --keep-top), 0 when unbounded (every active latent)
    n_features: int

    @property
    def feature_bits(self) -> int:
        """Bits that hold a feature id (16 for 65,536 features)."""
        return max(1, (self.n_features - 1).bit_length())

    @property
    def key_bits(self) -> int:
        """Width of a key: 32 bits while at least 11 are left for the row serial, else 64."""
        return 32 if self.feature_bits <= 20 else 64

    @property
    def key_sql_type(self) -> str:
        """DuckDB type of one key."""
        return "UINTEGER" if self.key_bits == 32 else "UBIGINT"

    @property
    def key_dtype(self) -> type[np.unsignedinteger]:
        """NumPy type of one key."""
        return np.uint32 if self.key_bits == 32 else np.uint64

    @property
    def feature_mask(self) -> int:
        """Mask that takes the feature id out of a key."""
        return (1 << self.feature_bits) - 1

    def encode(self, serials: np.ndarray, features: np.ndarray) -> np.ndarray:
        """Keys for pairs: features [N] (ascending within a row) of the rows with the given serial numbers [N]."""
        # One bit fewer than the key holds: DuckDB's delta bit-packing needs the keys inside the signed range.
        serial_mask = (1 << (self.key_bits - 1 - self.feature_bits)) - 1
        high = (serials.astype(np.uint64) & np.uint64(serial_mask)) << np.uint64(self.feature_bits)
        return (high | features.astype(np.uint64)).astype(self.key_dtype)

    def decode(self, keys: np.ndarray) -> np.ndarray:
        """Feature ids (int32) from keys."""
        return (keys & self.key_dtype(self.feature_mask)).astype(np.int32)


def create_schema(con: duckdb.DuckDBPyConnection, layout: CodeLayout) -> None:
    """Create every table and view of an empty database for the given code layout."""
    run_columns = ",\n  ".join(f'"{name}" {sql}' for name, sql in RUN_COLUMNS.items())
    statements = [
        "CREATE TABLE store_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)",
        f"CREATE TABLE runs (\n  {run_columns}\n)",
        """CREATE TABLE images (
  image_id INTEGER PRIMARY KEY, path VARCHAR NOT NULL, label VARCHAR, width INTEGER, height INTEGER,
  content_hash VARCHAR, source VARCHAR, source_row BIGINT, item_key VARCHAR NOT NULL, run_id INTEGER NOT NULL,
  thumbnail BLOB)""",
        f"""CREATE TABLE token_codes (
  image_id INTEGER NOT NULL, token SMALLINT NOT NULL, feature_keys {layout.key_sql_type}[] NOT NULL,
  feature_values FLOAT[] NOT NULL, sse FLOAT NOT NULL, total_ss FLOAT NOT NULL)""",
        """CREATE TABLE batch_moments (
  run_id INTEGER NOT NULL, first_image_id INTEGER NOT NULL, last_image_id INTEGER NOT NULL,
  tokens BIGINT NOT NULL, sum_sq DOUBLE NOT NULL, sum_x DOUBLE[] NOT NULL)""",
        "CREATE TABLE image_embeddings (image_id INTEGER NOT NULL, embedding FLOAT[] NOT NULL)",
        """CREATE TABLE skipped (
  path VARCHAR NOT NULL, reason VARCHAR NOT NULL, source_row BIGINT, item_key VARCHAR NOT NULL, run_id INTEGER NOT NULL,
  skipped_at TIMESTAMP)""",
        f"""CREATE VIEW activations AS
SELECT image_id, CAST(token AS INTEGER) AS token,
       CAST(unnest(feature_keys) & {layout.feature_mask} AS INTEGER) AS feature,
       unnest(feature_values) AS value
FROM token_codes""",
        """CREATE VIEW token_errors AS
SELECT image_id, CAST(token AS INTEGER) AS token, sse, total_ss,
       CASE WHEN total_ss > 0 THEN 1 - CAST(sse AS DOUBLE) / total_ss END AS explained_variance
FROM token_codes""",
    ]
    for statement in statements:
        con.execute(statement)
    con.execute(
        "INSERT INTO store_meta VALUES ('schema_version', ?), ('k', ?), ('n_features', ?)",
        [str(SCHEMA_VERSION), str(layout.k), str(layout.n_features)],
    )


def read_layout(con: duckdb.DuckDBPyConnection) -> CodeLayout | None:
    """The code layout recorded in a database, or None for a database saetui has not written yet."""
    if not con.execute(
        "SELECT count(*) FROM (SELECT table_name AS name, database_name FROM duckdb_tables() UNION ALL "
        "SELECT view_name, database_name FROM duckdb_views()) WHERE database_name = current_database() "
        "AND name = 'store_meta'"
    ).fetchall()[0][0]:
        return None
    meta = dict(con.execute("SELECT key, value FROM store_meta").fetchall())
    return CodeLayout(k=int(meta["k"]), n_features=int(meta["n_features"]))


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    """The schema version a database was written with."""
    return int(con.execute("SELECT value FROM store_meta WHERE key = 'schema_version'").fetchall()[0][0])

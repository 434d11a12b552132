"""DuckDB storage: connections, the schema, the index writer, compact code decoding and query output.

Import the submodule you need (`saetui.store.connection`, `.writer`, `.reader`, `.output`); this package imports
nothing itself so that `saetui query` pays only for DuckDB.
"""

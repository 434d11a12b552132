"""The saetui command line: thin Typer modules that parse, call the library and print."""

"""`saetui note`: write, read and list notes and tags on features (and images), kept in the side file."""

from __future__ import annotations

import json
import sys

import typer

from saetui.commands.options import Database

HELP = """Write what a feature is, in your words, with tags; or print notes.

Notes live in the database's side file (saetui.duckdb -> saetui.notes.sqlite), so writing one needs no lock on
the database: it works while `saetui browse` is open or `saetui index` runs, and `saetui stats --force` leaves it
alone. SQL sees them as the table notes(feature, text, tags, author, updated_at) (image_notes for images), the
browser shows them on the feature page and in the features list (press e on a feature page to edit).

With TEXT the note is replaced (--append adds a line instead); --tag adds tags (repeat it, or separate with
commas), --untag removes them; --delete removes the note. Without TEXT or tags the note is printed. --list prints
every note (--tag filters), as text or --json.

Examples:

  saetui note 1234 "stripes on animals, any colour" --tag interesting

  saetui note 1234 --tag polysemantic

  saetui note --list --tag interesting --json
"""


def register(app: typer.Typer) -> None:
    """Add the `note` command to the root app."""

    @app.command("note", help=HELP, no_args_is_help=True)
    def note_command(
        key: int | None = typer.Argument(None, metavar="FEATURE", help="Feature id (image id with --image)."),
        text: str | None = typer.Argument(None, metavar="TEXT", help="The note.", show_default=False),
        tag: list[str] = typer.Option([], "--tag", "-t", help="Add a tag (repeatable, or comma-separated)."),
        untag: list[str] = typer.Option([], "--untag", help="Remove a tag (repeatable)."),
        append: bool = typer.Option(False, "--append", "-a", help="Add TEXT as a new line instead of replacing."),
        delete: bool = typer.Option(False, "--delete", help="Remove the note."),
        image: bool = typer.Option(False, "--image", help="FEATURE is an image id: note an image."),
        list_all: bool = typer.Option(False, "--list", help="Print every note (with --tag: those tagged so)."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
        db: Database = None,
    ) -> None:
        """Write or print notes."""
        from saetui.errors import UsageError
        from saetui.naming.notes import edit_note, list_notes, note_dict, show_note
        from saetui.paths import default_db

        path = db if db is not None else default_db()
        kind = "image" if image else "feature"
        if list_all:
            notes = list_notes(path, kind, tag)
            if as_json:
                sys.stdout.write(json.dumps([note_dict(n, kind) for n in notes], indent=2) + "\n")
            else:
                for note in notes:
                    sys.stdout.write(show_note(note, kind) + "\n")
            return
        if key is None:
            raise UsageError("no FEATURE given", "e.g. saetui note 1234 'what it is', or saetui note --list")
        if text is None and not tag and not untag and not delete:
            note = list_notes(path, kind, (), keys=[key])
            if as_json:
                sys.stdout.write(json.dumps(note_dict(note[0], kind) if note else None, indent=2) + "\n")
            else:
                sys.stdout.write((show_note(note[0], kind) if note else f"{kind} {key}: no note") + "\n")
            return
        note = edit_note(path, key, kind, text=text, add=tag, remove=untag, append=append, delete=delete)
        if as_json:
            sys.stdout.write(json.dumps(note_dict(note, kind) if note else None, indent=2) + "\n")
        else:
            sys.stdout.write((show_note(note, kind) if note else f"{kind} {key}: note deleted") + "\n")

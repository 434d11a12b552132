"""Editing notes and tags: checks the feature (or image) exists, merges tags, and formats a note for people."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from saetui.errors import NotFoundError, UsageError
from saetui.store.annotations import Annotations, Note, clean_tags
from saetui.store.connection import connect


def check_feature(feature: int, width: int) -> None:
    """Raise the one-line error unless feature is one of the SAE's width features."""
    if not 0 <= feature < width:
        raise UsageError(f"feature {feature} does not exist", f"the SAE has features 0 to {width - 1}")


def check_key(db: Path, key: int, kind: str) -> None:
    """Raise a one-line error unless the database has this feature (below the SAE's width) or image id."""
    con = connect(db, read_only=True)
    try:
        if kind == "feature":
            row = con.execute("SELECT max(n_features) FROM runs").fetchone()
            width = row[0] if row else None
            if width is None:
                raise NotFoundError(f"{db} has no run", "index images first: saetui index SOURCE --db PATH")
            check_feature(key, int(width))
        else:
            found = con.execute("SELECT 1 FROM images WHERE image_id = ?", [key]).fetchone()
            if found is None:
                raise NotFoundError(
                    f"image {key} is not in {db}", "look ids up with: saetui query 'select * from images'"
                )
    finally:
        con.close()


def edit_note(
    db: Path,
    key: int,
    kind: str = "feature",
    *,
    text: str | None = None,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
    append: bool = False,
    delete: bool = False,
) -> Note | None:
    """Change one note: replace or append text, add and remove tags, or delete it; returns what is stored now."""
    check_key(db, key, kind)
    side = Annotations(db)
    if delete:
        side.set_note(key, "", (), kind)
        return None
    old = side.note(key, kind)
    body = old.text if old is not None else ""
    if text is not None:
        body = f"{body}\n{text.strip()}".strip() if append else text
    dropped = set(clean_tags(remove))
    tags = [t for t in clean_tags([*(old.tags if old else ()), *add]) if t not in dropped]
    side.set_note(key, body, tags, kind)
    return side.note(key, kind)


def list_notes(db: Path, kind: str, tags: Sequence[str] = (), keys: Sequence[int] | None = None) -> list[Note]:
    """Notes of a kind, optionally only those carrying every tag given, or only those keys."""
    if not Path(db).is_file():
        raise NotFoundError(f"database {db} does not exist", "index images first: saetui index SOURCE --db PATH")
    wanted = set(clean_tags(tags))
    notes = Annotations(db).notes(kind)
    return [n for n in notes if wanted <= set(n.tags) and (keys is None or n.key in {int(k) for k in keys})]


def show_note(note: Note, kind: str) -> str:
    """A note as a few lines of text: id, tags, then the text indented."""
    tags = f"  [{', '.join(note.tags)}]" if note.tags else ""
    head = f"{kind} {note.key}{tags}  ({note.author or 'unknown'}, {note.updated_at})"
    body = "".join(f"\n  {line}" for line in note.text.splitlines())
    return head + body


def note_dict(note: Note, kind: str) -> dict[str, Any]:
    """A note as a JSON-ready dict, keyed by its feature (or image id)."""
    return {"feature" if kind == "feature" else "image_id": note.key, **note.fields()}

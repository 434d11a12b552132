"""The `saetui browse` Textual app (imported only by the browse and demo commands)."""

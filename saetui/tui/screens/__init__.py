"""The browser's pages, one screen per module."""

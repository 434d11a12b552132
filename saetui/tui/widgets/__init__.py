"""Reusable widgets of the browser, one per module."""

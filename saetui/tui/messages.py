"""Messages that cross widgets and screens: navigation requests from widgets, and results posted by workers.

Workers never touch widgets; they post one of the *Loaded/*Ready/*Finished messages, which carry plain data
(see saetui.tui.data) and the request they answer, so a handler can drop a result the user has moved past.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL.Image import Image
from textual.message import Message

from saetui.tui.data import FeaturePage, FeatureRows, ImagePage, Overview, QueryResult


@dataclass
class OpenFeature(Message):
    """Show a feature's page (posted by lists, tables and tiles; the app navigates)."""

    feature: int


@dataclass
class OpenImage(Message):
    """Show an image's page, optionally with the heatmap of a feature."""

    image_id: int
    feature: int | None = None


@dataclass
class FeaturesLoaded(Message):
    """The features table arrived."""

    rows: FeatureRows


@dataclass
class TextSearchFinished(Message):
    """Free-text search results (feature, score) for a query, or the one-line reason it could not run."""

    query: str
    hits: list[tuple[int, float]]
    error: str | None = None


@dataclass
class FeatureLoaded(Message):
    """The text of a feature page arrived."""

    page: FeaturePage


@dataclass
class ThumbnailReady(Message):
    """One tile's pixels are rendered (request says which page and overlay state they belong to)."""

    request: tuple[int, bool]
    index: int
    image: Image | None
    text: Any = None  # a Rich renderable instead of pixels when images are off


@dataclass
class ImageLoaded(Message):
    """The data of an image page arrived."""

    page: ImagePage


@dataclass
class ImagePixelsReady(Message):
    """The large image of an image page is rendered (with the overlay of `feature`, if any)."""

    image_id: int
    feature: int | None
    image: Image | None
    heat: Any  # the feature's token map as text


@dataclass
class SteerReady(Message):
    """A steering report of an image page (before/after classes, or the one-line reason it failed)."""

    image_id: int
    report: Any  # rich Text


@dataclass
class OverviewLoaded(Message):
    """The overview's data arrived."""

    overview: Overview


@dataclass
class QueryFinished(Message):
    """A SQL console query finished, with its result or its one-line error."""

    sql: str
    result: QueryResult | None
    error: str | None = None


@dataclass
class LoadFailed(Message):
    """A page's data could not be loaded; the page shows the one-line reason."""

    what: str
    error: str

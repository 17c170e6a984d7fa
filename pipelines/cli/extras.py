"""The optional extras the command's features need, and the one line it says when one is missing."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["DISTRIBUTION", "ExtraMissing", "needs"]

DISTRIBUTION = "aiopipelines"
"""The name the package is installed under (the name 'pipelines' on PyPI is another project)."""


class ExtraMissing(Exception):
    """A feature was asked for whose extra is not installed; the message says what to install."""


@contextlib.contextmanager
def needs(extra: str, feature: str) -> Iterator[None]:
    """Turn an ImportError raised inside the block into ExtraMissing naming `extra`.

    Wrap only the import of the modules that make up `feature` (``--redis``, ``serve``), so that
    an ImportError from the user's own modules is not mistaken for a missing extra.
    """
    try:
        yield
    except ImportError as exc:
        what = f"cannot import {exc.name}" if exc.name else str(exc)
        raise ExtraMissing(
            f"{feature} needs the '{extra}' extra ({what}): pip install '{DISTRIBUTION}[{extra}]'"
        ) from None

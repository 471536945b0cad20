"""Option parsers shared by several ``nca`` subcommands."""

from __future__ import annotations

import click


def parse_size(text: str | None) -> tuple[int, int] | None:
    """Parse ``HxW`` (or ``N`` for a square) into ``(height, width)`` pixels."""
    if text is None:
        return None
    parts = text.lower().split("x")
    try:
        values = [int(part) for part in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise click.BadParameter(f"{text!r} is not a size: expected HEIGHTxWIDTH in pixels, e.g. 64x64")
    return values[0], values[1]

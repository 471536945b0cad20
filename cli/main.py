"""Entry point of the ``nca`` command.

Subcommands are imported on first use, so ``nca simulate`` starts without loading
PyTorch and works where it is not installed.
"""

from __future__ import annotations

import importlib
import warnings

import click

# name -> "module:attribute" of the click command
SUBCOMMANDS = {
    "train": "cli.train:train",
    "evaluate": "cli.evaluate:evaluate",
    "export": "cli.export:export",
    "simulate": "cli.simulate:simulate",
    "analyze": "cli.analyze:analyze",
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when the subcommand runs."""

    def list_commands(self, ctx):
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx, cmd_name):
        target = SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)


OWN_PACKAGES = ("nca_train", "nca_sim", "analysis", "cli")


def format_warning(message, category, filename, lineno, line=None):
    """Show nca's own warnings as one line, without the source line that reads like a traceback."""
    if category.__module__.split(".")[0] in OWN_PACKAGES:
        return f"warning: {message}\n"
    return _default_format_warning(message, category, filename, lineno, line)


_default_format_warning = warnings.formatwarning


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nca")
def main():
    """Train, simulate and analyse neural cellular automata that segment images."""
    warnings.formatwarning = format_warning


if __name__ == "__main__":
    main()

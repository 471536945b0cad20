"""``nca export``: write the rule file of a training checkpoint."""

from __future__ import annotations

import click


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Rule file to write (.npz).")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
def export(checkpoint, output, force):
    """Write the rule file of CHECKPOINT (checkpoint.pt or its run directory) for the simulator.

    The file is written atomically: a failed export leaves no partial file and keeps
    any existing OUTPUT.
    """
    from nca_sim.rule import RuleFileError
    from nca_train.checkpoint import CheckpointError
    from nca_train.export import ExportError, export_checkpoint

    try:
        path = export_checkpoint(checkpoint, output, force=force)
    except (CheckpointError, ExportError, RuleFileError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"wrote {path}")

"""The `dermsight` command line. Commands parse their arguments and call the Python API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dermsight import DISCLAIMER, __version__
from dermsight.errors import DermsightError

app = typer.Typer(
    name="dermsight",
    help=f"Skin-condition classification that works on every skin tone.\n\n{DISCLAIMER}",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", "-c", help="YAML configuration file (defaults < file < overrides).")]
Overrides = Annotated[list[str] | None, typer.Argument(
    help="Configuration overrides as dotted key=value, e.g. prepare.split.val_fraction=0.2",
    show_default=False)]


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dermsight {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """dermsight: data → model → trust → use."""


@app.command()
def prepare(
    source: Annotated[str | None, typer.Option(help="Source name (see `dermsight sources`).")]
    = None,
    root: Annotated[str | None, typer.Option(
        help="Dataset root: local folder or fsspec URL (gs://, s3://, https://).")] = None,
    out: Annotated[str | None, typer.Option(help="Output folder.")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes measuring images.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for the splits.")] = None,
    config: ConfigOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    overrides: Overrides = None,
) -> None:
    """Validate and measure every image of a dataset; write OUT/manifest.parquet, audit.json
    and figures/. Options override the config file; KEY=VALUE overrides anything."""
    from dermsight.config import load_config
    from dermsight.prepare.pipeline import run_prepare

    flags = {"source": source, "root": root, "out": out, "workers": workers, "seed": seed}
    extra = [f"prepare.{k}={json.dumps(v)}" for k, v in flags.items() if v is not None]
    user = [o if o.startswith("prepare.") else f"prepare.{o}" for o in (overrides or [])]
    try:
        cfg = load_config(config, extra + user).prepare
        result = run_prepare(cfg, progress=not quiet)
    except DermsightError as exc:
        _fail(exc)
    counts = result.audit["counts"]
    dups = result.audit["duplicates"].get("n_clusters", 0)
    summary = result.audit["summary"]["lighting"]
    typer.echo(
        f"prepared {counts['kept']} of {counts['listed']} images from '{cfg.source}' "
        f"({counts['excluded']} excluded, {dups} duplicate clusters, "
        f"{summary['poor']} poorly lit) in {result.audit['timing']['seconds']} s "
        f"→ {result.out}/manifest.parquet")


@app.command()
def train(
    config: Annotated[Path, typer.Option("--config", "-c", help="YAML configuration file.")],
    run_name: Annotated[str | None, typer.Option(help="Run folder name under train.output_dir.")]
    = None,
    seed: Annotated[int | None, typer.Option(help="Seed (same seed, same metrics).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    overrides: Overrides = None,
) -> None:
    """Train a model from a config; writes experiments/<run>/ (config, metrics.csv, report.json,
    figures, checkpoints, weights.txt). KEY=VALUE overrides any config key, e.g. data.root=DIR."""
    from dermsight.config import load_config

    extra = []
    if run_name is not None:
        extra.append(f"train.run_name={json.dumps(run_name)}")
    if seed is not None:
        extra.append(f"train.seed={seed}")
    if quiet:
        extra.append("train.progress_bar=false")
    try:
        cfg = load_config(config, extra + list(overrides or []))
        from dermsight.train.run import run_training

        result = run_training(cfg, progress=not quiet)
    except DermsightError as exc:
        _fail(exc)
    m = result.report["metrics"]
    typer.echo(
        f"trained {result.run_dir.name}: val accuracy {m['accuracy']:.3f}, balanced accuracy "
        f"{m['balanced_accuracy']:.3f}, macro AUROC {m['auroc_macro']:.3f}, macro-F1 "
        f"{m['f1_macro']:.3f} in {result.report['train_seconds']} s → {result.run_dir}")


@app.command()
def sources() -> None:
    """List the registered dataset sources and their options."""
    import sys

    from dermsight.sources import get_source, list_sources

    for name in list_sources():
        cls = get_source(name)
        opts = ", ".join(f"{k}={f.default!r}" for k, f in cls.Options.model_fields.items())
        doc = (sys.modules[cls.__module__].__doc__ or "").strip().splitlines()
        typer.echo(f"{name:16s} {doc[0] if doc else ''}")
        if opts:
            typer.echo(f"{'':16s} options: {opts}")


@app.command("config")
def show_config(
    config: ConfigOpt = None,
    overrides: Overrides = None,
) -> None:
    """Print the resolved configuration (defaults < file < overrides) as YAML."""
    from dermsight.config import dump_config, load_config

    try:
        typer.echo(dump_config(load_config(config, overrides)), nl=False)
    except DermsightError as exc:
        _fail(exc)


@app.command()
def schema() -> None:
    """Print the manifest schema as a Markdown table."""
    from dermsight.manifest import schema_markdown

    typer.echo(schema_markdown())

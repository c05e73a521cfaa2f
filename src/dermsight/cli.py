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
    and figures/. Options override the config file; KEY=VALUE overrides anything. A training
    config (one with a data section and no prepare.source) prepares its data: the same source,
    root and options, by default into the folder `dermsight train` reads."""
    from dermsight.config import PrepareConfig, load_config
    from dermsight.prepare.pipeline import run_prepare

    flags = {"source": source, "root": root, "out": out, "workers": workers, "seed": seed}
    extra = [f"prepare.{k}={json.dumps(v)}" for k, v in flags.items() if v is not None]
    user = [o if o.startswith(("prepare.", "data.")) else f"prepare.{o}" for o in (overrides or [])]
    try:
        full = load_config(config, extra + user)
        cfg, default = full.prepare, PrepareConfig()
        if source is None and cfg.source == default.source and full.data.source != cfg.source:
            if root is not None:
                full = full.model_copy(update={"data": full.data.model_copy(update={"root": root})})
            cfg = full.data_prepare(out=cfg.out if cfg.out != default.out else None)
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
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    if getattr(rank_zero_only, "rank", 0) != 0:  # under DDP, every process returns here
        return
    m = result.report["metrics"]
    typer.echo(
        f"trained {result.run_dir.name}: val accuracy {m['accuracy']:.3f}, balanced accuracy "
        f"{m['balanced_accuracy']:.3f}, macro AUROC {m['auroc_macro']:.3f}, macro-F1 "
        f"{m['f1_macro']:.3f} in {result.report['train_seconds']} s → {result.run_dir}")


@app.command()
def evaluate(
    run: Annotated[Path, typer.Option(help="Run folder, e.g. experiments/ham10000.")],
    source: Annotated[str, typer.Option(help="Source name of the data to score.")],
    root: Annotated[str | None, typer.Option(
        help="Dataset root (default: the run's own when --source is the run's).")] = None,
    split: Annotated[str, typer.Option(help="Split to score (train, val or test).")] = "test",
    out: Annotated[Path | None, typer.Option(
        help="Output folder (default RUN/eval-SOURCE-SPLIT).")] = None,
    coverage: Annotated[float, typer.Option(help="Target coverage of the prediction sets.")]
    = 0.9,
    conformal: Annotated[str, typer.Option(
        help="Conformal score: lac (smallest sets) or aps (adaptive sets).")] = "lac",
    conformal_mode: Annotated[str, typer.Option(
        help="marginal, class (per class) or group (per skin-tone bucket) thresholds.")]
    = "marginal",
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the CIs.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed (bootstrap, Grad-CAM sample).")] = 0,
    cam: Annotated[bool, typer.Option("--cam/--no-cam", help="Grad-CAM explanations.")] = True,
    cam_samples: Annotated[int, typer.Option(help="Images in the seeded Grad-CAM sample.")]
    = 200,
    tta: Annotated[str | None, typer.Option(
        "--tta", help="Test-time augmentation: none, hflip, flips (h, v, both) or d4 (flips and "
        "90-degree turns; square inputs). Default: as trained.", show_default=False)] = None,
    workers: Annotated[int, typer.Option(help="DataLoader / measuring processes.")] = 2,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 32,
    recalibrate: Annotated[bool, typer.Option(
        help="Refit calibration.json even when it matches these settings.")] = False,
    source_option: Annotated[list[str] | None, typer.Option(
        "--source-option", help="Source option KEY=VALUE (repeatable), e.g. split_dirs=true.",
        show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Score a trained run on one split of any dataset: metrics, calibration (fitted on the
    run's validation split, stored in RUN/calibration.json), prediction sets, fairness by skin
    tone with bootstrap CIs, Grad-CAM; writes OUT/predictions.csv, report.json, report.html,
    figures/."""
    import yaml

    from dermsight.evaluate.run import EvalOptions, run_evaluate

    source_options = None
    for item in source_option or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            _fail(ValueError(f"--source-option expects KEY=VALUE; got {item!r}"))
        source_options = {**(source_options or {}), key.strip(): yaml.safe_load(value)}
    options = EvalOptions(source_options=source_options, split=split, out=out,
                          coverage=coverage, conformal=conformal,
                          conformal_mode=conformal_mode, bootstrap=bootstrap, seed=seed,
                          cam=cam, cam_samples=cam_samples, tta=tta, workers=workers,
                          batch_size=batch_size, recalibrate=recalibrate, progress=not quiet)
    try:
        result = run_evaluate(run, source=source, root=root, options=options)
    except DermsightError as exc:
        _fail(exc)
    r = result.report
    m, cal, conf = r["metrics"], r["calibration"], r["conformal"]
    typer.echo(
        f"evaluated {r['run_name']} on {source}/{split} ({r['n']} images): accuracy "
        f"{m['accuracy']:.3f}, balanced accuracy {m['balanced_accuracy']:.3f}, macro AUROC "
        f"{m['auroc_macro']:.3f}; ECE {cal['ece_before']:.3f} → {cal['ece_after']:.3f} "
        f"(T = {cal['temperature']:.2f}); {conf['method'].upper()} coverage "
        f"{conf['coverage']:.3f} (target {conf['target']:.2f}), mean set size "
        f"{conf['mean_set_size']:.2f} → {result.out}/report.html")
    for note in r["notes"]:
        typer.echo(f"note: {note}")


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(
        help="Run folders, evaluation folders or report.json files.")],
    csv: Annotated[Path | None, typer.Option(help="Also write the table as CSV.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write it as JSON.")]
    = None,
) -> None:
    """Print runs / evaluation reports side by side (accuracy, balanced accuracy, F1, AUROC,
    ECE after scaling, coverage, worst group gap)."""
    from dermsight.evaluate.compare import compare_reports, format_table
    from dermsight.io import atomic_write_text

    try:
        table = compare_reports(runs)
    except DermsightError as exc:
        _fail(exc)
    typer.echo(format_table(table))
    if csv is not None:
        atomic_write_text(csv, table.to_csv(index=False))
    if json_out is not None:
        atomic_write_text(json_out, table.to_json(orient="records", indent=2))


@app.command()
def export(
    run: Annotated[Path, typer.Option(help="Run folder (experiments/<run>) or best.pt.")],
    out: Annotated[Path, typer.Option(help="Model folder to write.")],
    int8: Annotated[bool, typer.Option("--int8/--no-int8",
                                       help="Also write model.int8.onnx (static QDQ).")] = True,
    fp32: Annotated[bool, typer.Option("--fp32/--no-fp32", help="Keep model.onnx (fp32) in "
                                       "OUT; --no-fp32 leaves only the int8 model.")] = True,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
    calibration_images: Annotated[int, typer.Option(
        help="Training images calibrating the int8 ranges.")] = 200,
    parity_images: Annotated[int | None, typer.Option(
        help="Validation images for the parity check (default: all).")] = None,
    photo_type: Annotated[str | None, typer.Option(
        help="dermoscopy or clinical: the photos the model answers (default: the training "
        "source's kind).")] = None,
) -> None:
    """Export a trained run to a torch-free model folder: model.onnx, model.int8.onnx,
    model.json and MODEL_CARD.md, with parity measured on the validation split."""
    from dermsight.export import export_model
    from dermsight.phototype import check_photo_type

    try:
        kind = check_photo_type(photo_type, where="--photo-type")
    except ValueError as exc:
        _fail(exc)
    try:
        result = export_model(run, out, int8=int8, opset=opset, keep_fp32=fp32,
                              calibration_images=calibration_images,
                              parity_images=parity_images, photo_type=kind)
    except DermsightError as exc:
        _fail(exc)
    if result.info.get("photo_type") is None:
        typer.secho("note: the model does not say which photos it answers (a folder or "
                    "synthetic source): give --photo-type before serving it with the router",
                    fg=typer.colors.YELLOW, err=True)
    p = result.info["parity"]
    names = ", ".join(f.name for f in result.files.values())
    typer.echo(f"exported {run} → {result.out} ({names})")
    if p:
        agree = p.get("int8_top1_agreement")
        typer.echo(f"parity on {p['n_val_images']} validation images: fp32 max |Δp| "
                   f"{p['fp32_max_abs_prob_diff']:.2e}"
                   + (f", int8 top-1 agreement {100 * agree:.2f} %" if agree is not None else ""))


@app.command("fit-router")
def fit_router_cmd(
    not_skin: Annotated[Path, typer.Option(
        help="Folder of pictures that are not skin (scripts/gather_not_skin.py).")],
    source: Annotated[list[str] | None, typer.Option(
        help="SOURCE=ROOT of skin photos (repeatable); each source's own photo type.")] = None,
    out: Annotated[Path, typer.Option(help="Router folder to write.")] = Path("models/router"),
    crops: Annotated[int, typer.Option(help="Random crops per not-skin training picture.")] = 2,
    max_false_refusal: Annotated[float, typer.Option(
        help="Share of skin photos (out of fold) the refusal threshold may refuse.")] = 0.0025,
    max_per_type: Annotated[int, typer.Option(help="Training photos per kind, at most.")] = 3000,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Fit the photo-type router (dermoscopy / clinical / not skin) on a frozen ImageNet
    backbone and export it (int8 ONNX + router.json) into OUT."""
    from dermsight.export.router import export_router
    from dermsight.train.router import calibration_batch, fit_router, load_router_data

    sources = source or ["ham10000=../shared/data/ham10000",
                         "fitzpatrick17k=../shared/data/fitzpatrick17k"]
    try:
        data = load_router_data(sources, not_skin, seed=seed)
        fitted = fit_router(data, crops=crops, max_false_refusal=max_false_refusal,
                            max_train_per_type=max_per_type, seed=seed)
        info = export_router(fitted, out, calibration_batch(data, fitted.preprocess, seed=seed),
                             extra={"data": {"sources": sources, "not_skin": str(not_skin),
                                             "val_fraction": 0.2, "seed": seed}})
    except DermsightError as exc:
        _fail(exc)
    fit = info["fit"]
    typer.echo(f"router → {out}: refuse at p(not skin) >= {info['refuse_threshold']:.3f}; "
               f"out of fold: accuracy "
               f"{fit['out_of_fold_accuracy']:.4f}, skin photos refused "
               f"{fit['out_of_fold_false_refusal']:.4f}, not-skin refused "
               f"{fit['out_of_fold_not_skin_refused']:.4f}")
    skin = fit.get("skin_type_out_of_fold")
    if skin:
        typer.echo(f"skin-type head, out of fold on {skin['n']} labelled clinical photos: "
                   f"Spearman {skin['spearman']:.3f}, within ±1 type {skin['within_1']:.3f}")


@app.command("predict")
def predict_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Image files and/or folders.")],
    model: Annotated[Path | None, typer.Option(
        help="A folder of model folders, each photo routed to the model for its kind "
        "(default: the bundled models/), or one model folder, which then answers every photo."
    )] = None,
    photo_type: Annotated[str, typer.Option(
        help="auto (the router decides), dermoscopy or clinical: the kind of every photo.")]
    = "auto",
    metadata: Annotated[Path | None, typer.Option(
        help="CSV of patient details, one row per image, matched by image_id (file name with "
        "or without extension) or file; columns named as the models' metadata fields.")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Write JSON records.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Write CSV rows.")] = False,
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")]
    = None,
    top_k: Annotated[int, typer.Option(help="Classes listed per image.")] = 3,
    precision: Annotated[str, typer.Option(help="auto, int8 or fp32.")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Predict image files and folders with the exported models: each photo goes to the model
    for its kind, a photo that is not of skin gets no diagnosis; unreadable files are reported
    by name and skipped."""
    from dermsight.phototype import check_photo_type
    from dermsight.serve.files import collect_images, format_records, predict_files
    from dermsight.serve.served import ServedModels

    if as_json and as_csv:
        _fail(DermsightError("choose one of --json and --csv"))
    try:
        kind = check_photo_type(photo_type, where="--photo-type")
    except ValueError as exc:
        _fail(exc)
    try:
        models = ServedModels.load(model, precision=precision)
        table = None
        if metadata is not None:
            from dermsight.serve.metadata_csv import read_metadata_csv

            table = read_metadata_csv(metadata, models.metadata_schema, models.metadata_fields)
            for note in table.notes:
                typer.secho(f"note: {note}", fg=typer.colors.YELLOW, err=True)
        records = predict_files(models, collect_images(paths), top_k=top_k, progress=not quiet,
                                photo_type=kind, metadata_table=table)
        text = format_records(records, "json" if as_json else "csv" if as_csv else "text")
    except DermsightError as exc:
        _fail(exc)
    if out is not None:
        from dermsight.io import atomic_write_text

        atomic_write_text(out, text)
    else:
        typer.echo(text, nl=False)
    bad = [r for r in records if not r["ok"]]
    for r in bad:
        typer.secho(f"skipped {r['file']}: {r['error']}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"{len(records) - len(bad)} of {len(records)} images predicted"
               + (f" → {out}" if out else ""), err=True)


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


@app.command()
def serve(
    model: Annotated[Path | None, typer.Option(
        "--model", help="A folder of model folders (default: the repository's models/: every "
        "model there, with the photo-type router), or one model folder served alone.")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Server processes (each loads the model).")] = 1,
    precision: Annotated[str, typer.Option(help="auto, int8 or fp32.")] = "auto",
    concurrency: Annotated[int, typer.Option(
        help="Inferences run at once per process.")] = 2,
    threads: Annotated[int | None, typer.Option(
        help="onnxruntime threads per inference (default: its own choice).")] = None,
    max_upload_mb: Annotated[float, typer.Option(help="Largest accepted image, in MB.")] = 10.0,
    pixel_budget_mp: Annotated[float | None, typer.Option(
        help="Megapixels decoded at once across the process (predictions and tracking "
        "uploads); beyond it 503 with Retry-After (default: twice the largest image, "
        "80).")] = None,
    cors_origin: Annotated[list[str] | None, typer.Option(
        help="Allow this browser origin (repeatable); CORS is off without it.")] = None,
    no_web: Annotated[bool, typer.Option("--no-web", help="API only, no web app at '/'.")]
    = False,
    track_db: Annotated[str | None, typer.Option(
        "--track-db", help="Also serve photo tracking (/v1/track, /track pages) on this "
        "database URL, e.g. sqlite:///runs/track/track.db or postgresql+psycopg://…")] = None,
) -> None:
    """Serve the REST API (/v1/predict, /v1/model, /docs) and the web app at '/'."""
    import os

    import uvicorn

    from dermsight.serve.api import ServeSettings, create_app
    from dermsight.serve.api.settings import ENV_VAR
    from dermsight.serve.served import ServedModels

    try:
        settings = ServeSettings(
            model_dir=model, precision=precision, max_concurrency=concurrency, threads=threads,
            max_upload_bytes=int(max_upload_mb * 1024 * 1024), cors_origins=cors_origin or [],
            web=not no_web, track_database_url=track_db,
            pixel_budget=None if pixel_budget_mp is None else int(pixel_budget_mp * 1_000_000))
        engine = ServedModels.load(settings.model_dir, precision=settings.precision,
                                   threads=settings.threads)  # fail fast on a bad folder
    except (DermsightError, ValueError) as exc:
        _fail(exc)
    served = ", ".join(f"{kind}: {e.model_dir}" for kind, e in engine.engines.items())
    router = f"router {engine.router.folder}" if engine.router is not None else "no router"
    typer.echo(f"serving {served} ({router}) on http://{host}:{port} (docs: /docs)", err=True)
    if workers <= 1:
        uvicorn.run(create_app(engine, settings), host=host, port=port)
    else:
        os.environ[ENV_VAR] = settings.to_env()
        uvicorn.run("dermsight.serve.api.app:create_app_from_env", factory=True, host=host,
                    port=port, workers=workers)


from dermsight.cli_track import app as _track_app  # noqa: E402 (sub-app: dermsight track …)

app.add_typer(_track_app, name="track")

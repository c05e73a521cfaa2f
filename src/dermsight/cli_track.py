"""``dermsight track …``: the tracking database from the command line (same service as the API).

Where things live: ``--data-dir`` (default ``$DERMSIGHT_TRACK_DIR`` or ``runs/track``: the SQLite
database ``track.db`` and ``images/``), or ``--db URL`` (e.g. ``postgresql://…``) with
``--store`` (a folder or fsspec URL). The API key comes from ``--key`` or ``$DERMSIGHT_API_KEY``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from dermsight import DISCLAIMER
from dermsight.errors import DermsightError

app = typer.Typer(name="track", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False,
                  help="Follow photos of a skin condition over time (subjects → series → "
                       f"photos) and say whether it is improving.\n\n{DISCLAIMER}")

DataDir = Annotated[Path | None, typer.Option(
    "--data-dir", help="Folder of the SQLite database and images (default $DERMSIGHT_TRACK_DIR "
                       "or runs/track).")]
DbUrl = Annotated[str | None, typer.Option(
    "--db", help="Database URL instead of the SQLite file (postgresql://user:pw@host/db).")]
Store = Annotated[str | None, typer.Option(
    "--store", help="Image store folder or fsspec URL (default DATA_DIR/images).")]
Key = Annotated[str | None, typer.Option(
    "--key", help="API key (default $DERMSIGHT_API_KEY).", show_default=False)]
TrendDir = Annotated[Path | None, typer.Option(
    "--trend-model", help="ONNX trend model folder (default $DERMSIGHT_TREND_MODEL, else "
                          "the checkout's models/trend, found from any folder).")]
ModelDir = Annotated[str | None, typer.Option(
    "--model", help="Models for per-photo predictions and embeddings: a folder of model "
                    "folders, each photo routed to the model for its kind (default: the "
                    "repository's models/, when serving is installed), or one model folder.")]


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _engine(model: str | None, want: bool):
    if not want:
        return None
    try:
        from dermsight.serve.served import ServedModels
    except ImportError:
        return None
    try:  # every model under models/ behind the router, or the one model folder given
        return ServedModels.load(model)
    except (DermsightError, FileNotFoundError, OSError) as exc:
        if model is not None:
            raise
        typer.secho(f"note: no inference engine ({exc}); photos get no prediction",
                    err=True, fg=typer.colors.YELLOW)
        return None


def _tracker(data_dir: Path | None, db_url: str | None, store: str | None,
             trend: Path | None = None, model: str | None = None, engine: bool = False):
    from dermsight.track import db
    from dermsight.track.service import Tracker
    from dermsight.track.trend import default_trend_dir

    data_dir = Path(data_dir or os.environ.get("DERMSIGHT_TRACK_DIR", "runs/track"))
    db_url = db_url or os.environ.get("DERMSIGHT_TRACK_DB") or None
    if db_url is None:
        data_dir.mkdir(parents=True, exist_ok=True)
    trend = trend or default_trend_dir()
    return Tracker(db_url or db.default_url(data_dir), store or str(data_dir / "images"),
                   engine=_engine(model, engine), trend_dir=trend if trend.is_dir() else None)


def _key(tracker, key: str | None) -> str:
    return tracker.authenticate(key or os.environ.get("DERMSIGHT_API_KEY"))


def _print(obj) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


@app.command("init-db")
def init_db(data_dir: DataDir = None, db: DbUrl = None, store: Store = None) -> None:
    """Create or upgrade the database (Alembic `upgrade head`) and check the image store."""
    try:
        t = _tracker(data_dir, db, store)
        rep = t.reconcile()
        typer.echo(f"database ready at {t.db.url.render_as_string(hide_password=True)}; "
                   f"{t.counts()}; images in {t.store.root}"
                   + (f"; removed {len(rep['removed_orphans'])} orphan files"
                      if rep["removed_orphans"] else ""))
    except DermsightError as exc:
        _fail(exc)


@app.command("create-key")
def create_key(name: Annotated[str, typer.Option(help="A note on who uses the key.")] = "",
               data_dir: DataDir = None, db: DbUrl = None, store: Store = None) -> None:
    """Create an API key and print it (only its hash is stored: keep it safe)."""
    try:
        typer.echo(_tracker(data_dir, db, store).create_key(name))
    except DermsightError as exc:
        _fail(exc)


@app.command("add-subject")
def add_subject(label: Annotated[str, typer.Option(
                    help="Your own reference (no names or identifiers).")] = "",
                key: Key = None, data_dir: DataDir = None, db: DbUrl = None,
                store: Store = None) -> None:
    """Create a subject and print its id."""
    try:
        t = _tracker(data_dir, db, store)
        typer.echo(t.create_subject(_key(t, key), label)["id"])
    except DermsightError as exc:
        _fail(exc)


@app.command("add-series")
def add_series(subject: Annotated[str, typer.Argument(help="Subject id.")],
               name: Annotated[str, typer.Option(help="e.g. 'mole on left shoulder'.")] = "",
               body_site: Annotated[str | None, typer.Option(help="e.g. upper_back.")] = None,
               kind: Annotated[str, typer.Option(
                   help="lesion | face | body_site ('face' crops photos to the face).")]
               = "lesion",
               key: Key = None, data_dir: DataDir = None, db: DbUrl = None,
               store: Store = None) -> None:
    """Create a series (one lesion or body site) of a subject and print its id."""
    try:
        t = _tracker(data_dir, db, store)
        typer.echo(t.create_series(_key(t, key), subject, name, body_site, kind)["id"])
    except DermsightError as exc:
        _fail(exc)


@app.command("add-photo")
def add_photo(series: Annotated[str, typer.Argument(help="Series id.")],
              photos: Annotated[list[Path], typer.Argument(help="Photo file(s).")],
              taken_at: Annotated[str | None, typer.Option(
                  help="ISO 8601 capture time (one photo only; default: EXIF time, else now).")]
              = None,
              key: Key = None, model: ModelDir = None,
              predict: Annotated[bool, typer.Option(
                  "--predict/--no-predict", help="Run the inference engine on each photo.")]
              = True,
              photo_type: Annotated[str | None, typer.Option(
                  help="auto (the photo-type router decides), dermoscopy or clinical")] = None,
              data_dir: DataDir = None, db: DbUrl = None, store: Store = None) -> None:
    """Add photos to a series (duplicates are refused; poor photos are stored but flagged;
    with the inference engine, each photo is routed: one that is not of skin is not stored)."""
    if taken_at is not None and len(photos) > 1:
        _fail(DermsightError("--taken-at applies to one photo; give photos one at a time"))
    try:
        t = _tracker(data_dir, db, store, model=model, engine=predict)
        k = _key(t, key)
        for path in photos:
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise DermsightError(f"cannot read photo '{path}': {exc}") from None
            p = t.add_photo(k, series, data, taken_at=taken_at, filename=str(path),
                            photo_type=photo_type)
            flag = f"  FLAGGED: {p['flag_reason']}" if p["flagged"] else ""
            typer.echo(f"{p['id']}  {p['taken_at']}  {path}{flag}")
    except DermsightError as exc:
        _fail(exc)


@app.command("timeline")
def timeline(series: Annotated[str, typer.Argument(help="Series id.")],
             as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
             key: Key = None, data_dir: DataDir = None, db: DbUrl = None,
             store: Store = None) -> None:
    """List a series' photos, oldest first, with their quality, tone and severity."""
    try:
        t = _tracker(data_dir, db, store)
        tl = t.timeline(_key(t, key), series)
    except DermsightError as exc:
        _fail(exc)
    if as_json:
        _print(tl)
        return
    typer.echo(f"series {tl['id']} {tl['name']!r} ({tl['kind']}), {tl['n_photos']} photos")
    for p in tl["photos"]:
        top = ""
        if p["prediction"] and p["prediction"].get("top_k"):
            first = p["prediction"]["top_k"][0]
            if isinstance(first, dict):
                top = f"  top: {first.get('label')} {float(first.get('probability', 0)):.2f}"
            else:
                top = f"  top: {first}"
        flag = f"  FLAGGED: {p['flag_reason']}" if p["flagged"] else ""
        typer.echo(f"{p['taken_at']}  {p['id']}  severity {p['severity']:.3f}  "
                   f"tone {p['tone']['ita_category']}{top}{flag}")
    typer.echo(DISCLAIMER)


@app.command("trend")
def trend(series: Annotated[str, typer.Argument(help="Series id.")],
          as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
          key: Key = None, trend_model: TrendDir = None, data_dir: DataDir = None,
          db: DbUrl = None, store: Store = None) -> None:
    """Is it improving? The trend over the series' photos that pass the quality check."""
    try:
        t = _tracker(data_dir, db, store, trend=trend_model)
        tr = t.trend(_key(t, key), series)
    except DermsightError as exc:
        _fail(exc)
    if as_json:
        _print(tr)
        return
    if tr["trend"] is None:
        typer.echo(tr["message"])
    else:
        r = tr["trend"]
        typer.echo(f"{r['label']} (probability {r['probability']:.2f}, {r['method']}) over "
                   f"{tr['n_used']} of {tr['n_photos']} photos")
        if r.get("note"):
            typer.echo(f"note: {r['note']}")
    typer.echo(DISCLAIMER)


@app.command("delete-subject")
def delete_subject(subject: Annotated[str, typer.Argument(help="Subject id.")],
                   yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
                   key: Key = None, data_dir: DataDir = None, db: DbUrl = None,
                   store: Store = None) -> None:
    """Erase a subject: its series, photos and stored image files."""
    if not yes:
        typer.confirm(f"Erase subject {subject} and all its photos?", abort=True)
    try:
        t = _tracker(data_dir, db, store)
        r = t.delete_subject(_key(t, key), subject)
    except DermsightError as exc:
        _fail(exc)
    typer.echo(f"deleted subject {subject}: {r['series_deleted']} series, "
               f"{r['photos_deleted']} photos, {r['files_deleted']} files")


@app.command("serve")
def serve(host: Annotated[str, typer.Option(help="Interface.")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="Port.")] = 8001,
          model: ModelDir = None,
          predict: Annotated[bool, typer.Option("--predict/--no-predict")] = True,
          trend_model: TrendDir = None, data_dir: DataDir = None, db: DbUrl = None,
          store: Store = None) -> None:
    """Serve the tracking API and timeline page alone (the main app serves them too)."""
    import uvicorn

    from dermsight.serve.api.app import create_track_app

    try:
        t = _tracker(data_dir, db, store, trend=trend_model, model=model, engine=predict)
    except DermsightError as exc:
        _fail(exc)
    uvicorn.run(create_track_app(t), host=host, port=port, log_level="warning")

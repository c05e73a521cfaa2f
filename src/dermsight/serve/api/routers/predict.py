"""Predictions: one image, or a batch of images, with optional metadata."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile

from dermsight.serve.api import inference
from dermsight.serve.api.dependencies import LoadedEngine, State
from dermsight.serve.api.errors import ApiError
from dermsight.serve.api.limits import image_pixels, pixel_groups
from dermsight.serve.api.schemas import BatchItem, BatchResponse, ErrorBody, ErrorDetail, Prediction

router = APIRouter(tags=["predict"])

_ERRORS = {
    413: {"model": ErrorBody, "description": "Upload or image over the size / pixel limit"},
    415: {"model": ErrorBody, "description": "Not multipart/form-data, or the file is not an "
          "image"},
    422: {"model": ErrorBody, "description": "Invalid image, metadata or option"},
    503: {"model": ErrorBody, "description": "Model not loaded yet, or server busy"},
}

_METADATA_DOC = (
    "Optional patient metadata as a JSON object, e.g. {\"age\": 45, \"sex\": \"female\"} "
    "(fields and allowed values: GET /v1/model's metadata_schema). The same fields may also be "
    "sent as plain form fields (age=45). Empty values mean 'not given'.")

TopK = Annotated[int, Form(description="How many classes to return, best first.")]
Cam = Annotated[bool, Form(description="Also return a Grad-CAM overlay (PNG, base64).")]
Metadata = Annotated[str | None, Form(description=_METADATA_DOC)]
PhotoType = Annotated[str | None, Form(
    description="auto (default: the photo-type router decides), dermoscopy or clinical: the "
    "kind of photo, when you know better than the router. A photo the router finds is not of "
    "skin gets no assessment (refused: true, with a message).")]


@router.post("/predict", response_model=Prediction, responses=_ERRORS,
             summary="Classify one photo",
             description="The photo-type router first decides what kind of photo it is "
             "(dermoscopy, clinical, or not skin: refused, with no diagnosis) and which model "
             "answers it. Then: top-k conditions with calibrated probabilities, the conformal set, "
             "photo quality with retake tips, the estimated skin tone and optionally a Grad-CAM "
             "overlay. EXIF orientation is applied; EXIF data (GPS included) is never kept, "
             "logged or returned. Not medical advice.")
async def predict(
    request: Request,
    state: State,
    engine: LoadedEngine,
    file: Annotated[UploadFile, File(description="The photo (JPEG, PNG, WebP, ...).")],
    top_k: TopK = 3,
    cam: Cam = False,
    metadata: Metadata = None,
    photo_type: PhotoType = None,
) -> Prediction:
    settings = state.settings
    kind = inference.check_photo_type(photo_type)
    inference.check_top_k(top_k, engine, settings)
    form = await request.form()  # already parsed by FastAPI: cached, not read twice
    meta = inference.metadata_from_form(form, metadata, engine.metadata_schema or {}, 1,
                                        getattr(engine, "metadata_fields", ()))[0]
    data = await inference.read_upload(file, settings, "file")
    return await state.run(
        lambda: inference.decode_and_predict(engine, settings, data, "file", meta,
                                             top_k=top_k, cam=cam, photo_type=kind),
        pixels=image_pixels(data, settings.max_pixels))


@router.post("/predict/batch", response_model=BatchResponse, responses=_ERRORS,
             summary="Classify several photos",
             description="Each file gets a result or its own error (one bad file does not fail "
             "the batch); results keep the order of the files. Metadata: one JSON object for "
             "every file or a list with one object per file.")
async def predict_batch(
    request: Request,
    state: State,
    engine: LoadedEngine,
    files: Annotated[list[UploadFile], File(description="The photos.")],
    top_k: TopK = 3,
    cam: Cam = False,
    metadata: Metadata = None,
    photo_type: PhotoType = None,
) -> BatchResponse:
    settings = state.settings
    kind = inference.check_photo_type(photo_type)
    if len(files) > settings.max_batch_size:
        raise ApiError(413, "too_many_files",
                       f"{len(files)} files sent, the limit is {settings.max_batch_size}", "files")
    inference.check_top_k(top_k, engine, settings)
    form = await request.form()
    metas = inference.metadata_from_form(form, metadata, engine.metadata_schema or {},
                                         len(files), getattr(engine, "metadata_fields", ()))
    results: list[BatchItem | None] = [None] * len(files)
    payloads: dict[int, bytes] = {}
    for i, upload in enumerate(files):
        try:
            payloads[i] = await inference.read_upload(upload, settings, f"files[{i}]")
        except ApiError as exc:
            results[i] = BatchItem(index=i, error=ErrorDetail(**exc.body()["error"]))

    # The files are decoded one run at a time (runs of at most max_pixels, or one file), so a
    # batch holds the pixels of its largest run, not of every file at once.
    order = list(payloads)
    sizes = [image_pixels(payloads[i], settings.max_pixels) for i in order]
    groups = pixel_groups(sizes, settings.max_pixels)
    held = max((sum(sizes[j] for j in group) for group in groups), default=0)
    runs = [[order[j] for j in group] for group in groups]

    def work() -> list[BatchItem | None]:
        for run in runs:
            images, keep = [], []
            for i in run:
                try:
                    images.append(inference.decode(payloads[i], settings, f"files[{i}]"))
                    keep.append(i)
                except ApiError as exc:
                    results[i] = BatchItem(index=i, error=ErrorDetail(**exc.body()["error"]))
            if images:
                preds = inference.predict_images(engine, images, [metas[i] for i in keep],
                                                 top_k=top_k, cam=cam, photo_type=kind)
                for i, pred in zip(keep, preds):
                    results[i] = BatchItem(index=i, prediction=pred)
        return results

    done = await state.run(work, pixels=held)
    return BatchResponse(results=[r for r in done if r is not None])

"""The torch-free photo-type router: an exported router folder → the kind of each photo.

:meth:`Router.classify` returns, per RGB uint8 image, a :class:`Route`: the kind
(:data:`~dermsight.phototype.PHOTO_TYPES`), the probability of each kind, whether the photo is
refused (``not_skin``: p(not skin) at or above the folder's ``refuse_threshold``; otherwise the
more probable of the two skin kinds) and what everyday object it looks most like (the ImageNet
head shipped with the backbone's weights), which a refusal message may mention. A router folder
may also hold a learned Fitzpatrick skin-type head on the same embedding
(:meth:`Router.skin_types`); it is used only when ``router.json`` marks it ``served``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dermsight.data.preprocess import Preprocess
from dermsight.errors import ConfigError
from dermsight.phototype import PHOTO_TYPES
from dermsight.schemas import RouterJson, read_json
from dermsight.serve.engine import open_session, softmax

ROUTER_JSON = "router.json"


@dataclass
class Route:
    photo_type: str
    probabilities: dict[str, float]
    forced: bool = False
    looks_like: list[tuple[str, float]] = field(default_factory=list)
    #: the learned Fitzpatrick estimate from the router's embedding (None without a head)
    skin_type: dict | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"photo_type": self.photo_type, "forced": self.forced,
                "probabilities": {k: round(float(v), 6) for k, v in self.probabilities.items()},
                "looks_like": [{"label": c, "probability": round(float(p), 6)}
                               for c, p in self.looks_like]}


class Router:
    """A loaded router folder (``router.json`` + ONNX). Thread-safe for :meth:`classify`."""

    batch_size = 32

    def __init__(self, folder: Path, info: RouterJson | dict, session: Any,
                 precision: str) -> None:
        where = folder / ROUTER_JSON
        info = info if isinstance(info, RouterJson) else RouterJson.parse(info, where)
        self.folder, self.session, self.precision = folder, session, precision
        #: router.json as read
        self.info = info.dump()
        self.photo_types = list(info.photo_types)
        self.refuse_threshold = info.refuse_threshold
        try:
            self.preprocess = Preprocess.from_dict(info.preprocess)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: 'preprocess' is malformed: {exc}") from exc
        if sorted(self.photo_types) != sorted(PHOTO_TYPES):
            raise ConfigError(f"{where}: photo_types must be {list(PHOTO_TYPES)}, got "
                              f"{self.photo_types}")
        self.imagenet_classes = list(info.imagenet_classes)
        head = info.skin_type
        self.skin_type_head = None
        #: why the learned estimate is not shown (None when it is, or when there is none)
        self.skin_type_withheld = None
        if head and not head.get("served"):
            self.skin_type_withheld = ("not served: out of fold it does not reach the goals on "
                                       "every skin type (router.json skin_type.out_of_fold)")
        if head:
            try:
                self.skin_type_head = (np.asarray(head["weight"], np.float64),
                                       np.asarray(head["bias"], np.float64),
                                       np.asarray(head["classes"], np.float64))
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(f"{where}: 'skin_type' is malformed: {exc}") from exc

    @classmethod
    def load(cls, folder: str | Path, *, precision: str = "auto", threads: int | None = None,
             verify: bool = True) -> Router:
        folder = Path(folder)
        path = folder / ROUTER_JSON
        if not path.is_file():
            raise ConfigError(f"{folder} is not a router folder: {path} is missing")
        info = read_json(RouterJson, path)
        session, precision = open_session(folder, path, info.files, precision=precision,
                                          threads=threads, verify=verify, what="router model")
        return cls(folder, info, session, precision)

    def probabilities(self, images: list[np.ndarray], *, embeddings: bool = False
                      ) -> tuple[np.ndarray, ...]:
        """Photo-type probabilities ``(n, 3)`` (in ``photo_types`` order) and ImageNet
        probabilities ``(n, 1000)`` (and the embeddings ``(n, F)`` when asked for)."""
        types, objects, embs = [], [], []
        for s in range(0, len(images), self.batch_size):
            x = self.preprocess.batch(images[s:s + self.batch_size])
            t, o, e = self.session.run(["type_logits", "imagenet_logits", "embedding"],
                                       {"image": np.ascontiguousarray(x, np.float32)})
            types.append(softmax(t.astype(np.float64)))
            objects.append(softmax(o.astype(np.float64)))
            embs.append(e.astype(np.float64))
        if not types:
            out = (np.zeros((0, len(self.photo_types))), np.zeros((0, 1000)), np.zeros((0, 0)))
        else:
            out = (np.concatenate(types), np.concatenate(objects), np.concatenate(embs))
        return out if embeddings else out[:2]

    def skin_types(self, embeddings: np.ndarray, *, withheld: bool = False
                   ) -> list[dict | None]:
        """The learned Fitzpatrick estimate of each embedding: the expected type (1-6), the
        nearest type, its probabilities and a derived Monk tone (1-10, not validated: no Monk
        labels were available to check it); None per row when the folder has no head, or one
        that is not served (see :attr:`skin_type_withheld`) unless ``withheld`` (benchmarks)."""
        if self.skin_type_head is None or (self.skin_type_withheld and not withheld):
            return [None] * len(embeddings)
        weight, bias, classes = self.skin_type_head
        probs = softmax(embeddings @ weight.T + bias)
        out = []
        for row in probs:
            expected = float(row @ classes)
            out.append({"fitzpatrick": int(np.clip(np.rint(expected), 1, 6)),
                        "expected": round(expected, 3),
                        "probabilities": {str(int(c)): round(float(p), 4)
                                          for c, p in zip(classes, row)},
                        "monk": int(np.clip(np.rint(1 + (expected - 1) * 9 / 5), 1, 10)),
                        "method": "learned from Fitzpatrick17k dermatologists' labels "
                                  "(clinical photos)"})
        return out

    def decide(self, probs: np.ndarray) -> list[str]:
        """The kind of each row of photo-type probabilities: not skin when p(not skin) reaches
        ``refuse_threshold``, else the more probable skin kind."""
        not_skin = self.photo_types.index("not_skin")
        skin = [i for i in range(len(self.photo_types)) if i != not_skin]
        out = []
        for row in probs:
            if row[not_skin] >= self.refuse_threshold:
                out.append("not_skin")
            else:
                out.append(self.photo_types[skin[int(np.argmax(row[skin]))]])
        return out

    def classify(self, images: list[np.ndarray], *, looks_like: int = 3) -> list[Route]:
        probs, objects, embeddings = self.probabilities(list(images), embeddings=True)
        kinds = self.decide(probs)
        types = self.skin_types(embeddings)
        routes = []
        for i, kind in enumerate(kinds):
            top = []
            if self.imagenet_classes and looks_like:
                order = np.argsort(-objects[i])[:looks_like]
                top = [(self.imagenet_classes[j].split(",")[0], float(objects[i, j]))
                       for j in order]
            routes.append(Route(kind, dict(zip(self.photo_types, map(float, probs[i]))),
                                looks_like=top, skin_type=types[i]))
        return routes

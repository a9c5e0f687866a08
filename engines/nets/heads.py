"""Which heads exist: a registry of `HeadSpec`s keyed by (head name, quality), free of torch.

A head turns the shared aligned crop into one named output. Each head does its own preprocessing
inside the graph: it center-crops the fraction of the crop that holds the tight face square plus its
own margin (`face_pad` per side), resizes, converts colour and scales as its network expects. The
torch modules live in `engines.nets`; a spec names the function that builds one (imported lazily,
so a cached ONNX graph can run without importing torch at all).

Extension point: `register_head(HeadSpec(...))` for a new head name or quality. A quality with no
spec of its own for a head falls back to "fast" (e.g. gender and age read the same nets at every quality).

Margins (face_pad) were measured on the labelled photos with real aligned crops (docs/models.md):
emotion reads the tight face square, the framing of FER2013's crops (pad 0.1 raised the mean
-log P(posed emotion) of the mini net from 0.55 to 0.86 and lost a face); gender keeps its loose 0.3
(7/7 photos whose gender the sources state, 6/7 at 0.0-0.1); SSR-Net its 0.4-0.5 from MODELS.md.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engines.errors import EmostreamError

if TYPE_CHECKING:
    from engines.store.store import ModelStore

EMBEDDING = "embedding"
"""Output concatenating every head's penultimate features (N, sum of feature dims)."""

QUALITIES: tuple[str, ...] = ("mtl", "fast", "accurate", "affectnet", "rafdb")
"""Quality modes: "mtl" (the project's own multi-task net: one trunk for emotion, gender and age, trained
on FER+ and UTKFace, bundled; adds a `contempt` output), "fast" (mini XCEPTION emotion, IMDB gender
XCEPTION, SSR-Net age), "accurate" (mini + big XCEPTION averaged over the crop and its mirror image),
"affectnet" (HSEmotion EfficientNet-B0, downloaded; adds a `contempt` output), "rafdb" (OpenCV Zoo's
RAF-DB MobileFaceNet, int8, for emotion; gender and age as in "fast")."""

QUALITY_HELP = (
    "mtl: the project's own multi-task net (default); fast: mini XCEPTION + SSR-Net; accurate: mini+big "
    "XCEPTION, flip TTA; affectnet: HSEmotion (downloaded); rafdb: OpenCV Zoo MobileFaceNet"
)
"""One line per quality for the command line's help."""

DEFAULT_HEADS: tuple[str, ...] = ("emotion", "gender", "age")
"""The product's head set."""

DEFAULT_QUALITY = "mtl"
"""The project's own multi-task net: the most accurate on FER+ and UTKFace at a fraction of the cost of
the older nets' fused graph (docs/models.md has the tables)."""


@dataclass(frozen=True)
class HeadSpec:
    """Static facts about one head: enough to name its output and key its export without torch.

    output_tail: per-face output shape ((7,) for probabilities, () for a scalar);
    feature_dim: length of the head's penultimate feature vector (checked when the net is built);
    face_pad: margin per side around the tight face square, as a fraction of its side;
    builder: "module:function" called as f(spec, model_paths, crop_size, crop_scale) -> torch Head;
    extra_outputs: further (name, per-face shape) outputs the head gives after its main one
    (the AffectNet head's `contempt`).
    """

    name: str
    quality: str
    models: tuple[str, ...]
    output_tail: tuple[int, ...]
    feature_dim: int
    face_pad: float
    builder: str
    extra_outputs: tuple[tuple[str, tuple[int, ...]], ...] = ()
    shared_trunk: str = ""
    """Heads with the same non-empty value run one trunk and give one embedding (the multi-task net)."""

    @property
    def outputs(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """(name, per-face shape) of every output of this head, main one first."""
        return ((self.name, self.output_tail), *self.extra_outputs)


def embedding_dim(specs: tuple[HeadSpec, ...] | list[HeadSpec]) -> int:
    """Length of the fused embedding: each head's features, a shared trunk's once."""
    return sum({s.shared_trunk or f"head:{s.name}": s.feature_dim for s in specs}.values())


_SPECS: dict[tuple[str, str], HeadSpec] = {}


def register_head(spec: HeadSpec) -> HeadSpec:
    """Add (or replace) the spec for (spec.name, spec.quality)."""
    _SPECS[(spec.name, spec.quality)] = spec
    return spec


def head_names() -> tuple[str, ...]:
    return tuple(sorted({name for name, _ in _SPECS}))


def head_spec(name: str, quality: str = "fast") -> HeadSpec:
    """The spec of head `name` at `quality` (falling back to "fast"); unknown names list valid ones."""
    if quality not in QUALITIES:
        raise EmostreamError(f"unknown quality {quality!r}; valid: {', '.join(QUALITIES)}")
    spec = _SPECS.get((name, quality)) or _SPECS.get((name, "fast"))
    if spec is None:
        raise EmostreamError(f"unknown head {name!r}; valid heads: {', '.join(head_names())}")
    return spec


def center_fraction(face_pad: float, crop_scale: float) -> float:
    """Side of a head's window as a fraction of the crop side (the face square spans 1/crop_scale).

    Capped at 1.0: a margin wider than the crop has to make do with the whole crop.
    """
    return min(1.0, (1.0 + 2.0 * face_pad) / crop_scale)


def build_head(spec: HeadSpec, store: ModelStore, crop_size: int, crop_scale: float) -> Any:
    """Build the torch module of `spec` from its verified model files (imports torch)."""
    module_name, func_name = spec.builder.split(":")
    factory: Callable[..., Any] = getattr(importlib.import_module(module_name), func_name)
    head = factory(spec, [store.path(m) for m in spec.models], crop_size, crop_scale)
    if head.feature_dim != spec.feature_dim:
        raise EmostreamError(
            f"head {spec.name}: model gives {head.feature_dim} features, its spec says {spec.feature_dim}"
        )
    return head


_XCEPTION = "engines.nets.xception:build_head"
_SSRNET = "engines.nets.ssrnet:build_head"

register_head(HeadSpec("emotion", "fast", ("fer_mini_xception",), (7,), 128, 0.0, _XCEPTION))
register_head(
    HeadSpec(
        "emotion",
        "accurate",
        ("fer_mini_xception", "fer_big_xception"),
        (7,),
        128 + 256,
        0.0,
        "engines.nets.xception:build_ensemble_head",
    )
)
register_head(
    HeadSpec(
        "emotion",
        "affectnet",
        ("hsemotion_enet_b0_8",),
        (7,),
        1280,
        0.0,
        "engines.nets.affectnet:build_head",
        (("contempt", ()),),
    )
)
register_head(HeadSpec("gender", "fast", ("gender_mini_xception",), (), 128, 0.3, _XCEPTION))
# age: SSR-Net trained on IMDB (docs/models.md). morph2 (mugshots) calls the young women of the photos
# 39-41 and moves most under a mirror or a 4 px shift (2.1 years); imdb and wiki are alike there
# (1.3 years): imdb for its far larger training set (IMDB-WIKI: 460k IMDb faces, 62k Wikipedia).
register_head(HeadSpec("age", "fast", ("ssrnet_age_imdb",), (), 358, 0.45, _SSRNET))
_MTL = "engines.nets.mtl_head:build_head"
_CONTEMPT = (("contempt", ()),)
register_head(HeadSpec("emotion", "mtl", ("emostream_mtl",), (7,), 128, 0.0, _MTL, _CONTEMPT, "mtl"))
register_head(HeadSpec("gender", "mtl", ("emostream_mtl",), (), 128, 0.0, _MTL, shared_trunk="mtl"))
register_head(HeadSpec("age", "mtl", ("emostream_mtl",), (), 128, 0.0, _MTL, shared_trunk="mtl"))
register_head(
    HeadSpec(
        "emotion",
        "rafdb",
        ("mobilefacenet_rafdb",),
        (7,),
        512,
        0.0,
        "engines.nets.affectnet:build_rafdb_head",
    )
)
# gender_ssr: optional second opinion on gender (SSR-Net, IMDB); `gender` stays mini XCEPTION.
register_head(HeadSpec("gender_ssr", "fast", ("ssrnet_gender_imdb",), (), 358, 0.45, _SSRNET))

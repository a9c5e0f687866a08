"""Named pretrained models: where each comes from, its pinned sha256, licence and input/output facts.

Source of truth for the mirrored ones: ../shared/models/MODELS.md (byte-identical upstream files).
"""

from __future__ import annotations

from dataclasses import dataclass

from engines.errors import ModelStoreError

FER2013_EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""FER2013 emotion names in the models' output order."""

MTL_SHA256 = "e2294e7494edd1c76012a5877eaadc69f9c2864d7ccf50ce4d16c14f83c6ea91"
"""sha256 of the bundled multi-task weights (engines/weights/emostream_mtl_v1.pt, made by
tools/release_mtl.py from a training run's final.pt)."""

_RAW = "https://raw.githubusercontent.com"
_FC = f"{_RAW}/oarriaga/face_classification/b861d21b0e76ca5514cdeb5b56a689b7318584f4/trained_models"
_SSR = f"{_RAW}/shamangary/SSR-Net/f98b6cbe1c9c8c78649e5a331f94113564521525/pre-trained"
_HSE = f"{_RAW}/HSE-asavchenko/face-emotion-recognition/main/models/affectnet_emotions/onnx"


@dataclass(frozen=True)
class ModelSpec:
    """One downloadable model file and the facts needed to use it."""

    name: str
    filename: str
    sha256: str
    url: str
    licence: str
    task: str  # detector | emotion | gender | age
    input_spec: str
    classes: tuple[str, ...] = ()
    size_bytes: int | None = None
    in_mirror: bool = True
    bundled: bool = False
    """Shipped inside the package (engines/weights/): the project's own trained weights, no download."""


# One model per entry, its fields grouped by meaning on each line.
# fmt: off
MODELS: dict[str, ModelSpec] = {
    s.name: s
    for s in [
        ModelSpec(
            "yunet", "face_detection_yunet_2023mar.onnx",
            "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
            "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/face_detection_yunet_2023mar.onnx",
            "Apache-2.0", "detector",
            "BGR any size; rows x,y,w,h, 5 landmarks (right eye, left eye, nose, right/left mouth), score",
        ),
        ModelSpec(
            "blazeface_short", "face_detection_short_range.tflite",
            "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
            f"{_RAW}/google-ai-edge/mediapipe/master/mediapipe/modules/face_detection/face_detection_short_range.tflite",
            "Apache-2.0", "detector", "RGB; box + 6 keypoints + score; faces within ~2 m",
        ),
        ModelSpec(
            "blazeface_full", "face_detection_full_range_sparse.tflite",
            "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
            f"{_RAW}/google-ai-edge/mediapipe/master/mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
            "Apache-2.0", "detector", "RGB; box + 6 keypoints + score; group shots",
        ),
        ModelSpec(
            "fer_mini_xception", "fer2013_mini_XCEPTION.102-0.66.hdf5",
            "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
            f"{_FC}/emotion_models/fer2013_mini_XCEPTION.102-0.66.hdf5",
            "MIT", "emotion", "(N,64,64,1) gray, (x/255-0.5)*2", FER2013_EMOTIONS,
        ),
        ModelSpec(
            "fer_big_xception", "fer2013_big_XCEPTION.54-0.66.hdf5",
            "2c7ed52bc381077b5099afdfa392efb754516db91575f3f8ea120e81bc55db37",
            f"{_FC}/fer2013_big_XCEPTION.54-0.66.hdf5",
            "MIT", "emotion", "(N,64,64,1) gray, (x/255-0.5)*2", FER2013_EMOTIONS,
        ),
        ModelSpec(
            "gender_mini_xception", "gender_mini_XCEPTION.21-0.95.hdf5",
            "7affc7bd520c48ca908eada26988d0e17fdfa1d447d8ae5675395f05ca6f943b",
            f"{_FC}/gender_models/gender_mini_XCEPTION.21-0.95.hdf5",
            "MIT", "gender", "(N,64,64,1) gray, (x/255-0.5)*2; loose crop (20-40% pad)", ("woman", "man"),
        ),
        *[
            ModelSpec(
                f"ssrnet_{task}_{data}", f"ssrnet_{task}_{data}.h5", sha,
                f"{_SSR}/{folder}/ssrnet_3_3_3_64_1.0_1.0/ssrnet_3_3_3_64_1.0_1.0.h5",
                "Apache-2.0", task, "(N,64,64,3) BGR 0-255 raw; loose crop (40-50% pad)",
            )
            for task, data, folder, sha in [
                ("age", "imdb", "imdb", "f51ac230a68bafdcd9699160f01e4d67a78232419ebcfae8622e0638e6dd4ca3"),
                ("age", "wiki", "wiki", "f8b677f1a61fcf1233de0bd942f3172b1397fcbfe0f2784220154af1faf833e0"),
                ("age", "morph2", "morph2",
                 "0ad001c42cc2425ffaebd7d374983eba5c89e4f695ab10431c4c95573dc69f4d"),
                ("gender", "imdb", "imdb_gender_models",
                 "e295148efe9c282a27ebd69a64f6495b1b280728141047866ff81001089b1767"),
                ("gender", "wiki", "wiki_gender_models",
                 "2d15bfa72869526d1e2b80385157e34a55fb5a4b184bbac5ea56d623141d7e8c"),
            ]
        ],
        ModelSpec(
            "mobilefacenet_rafdb", "facial_expression_recognition_mobilefacenet_2022july_int8.onnx",
            "f0d7093aff10e2638c734c5f18a6a7eabd2b9239b20bdb9b8090865a6f69a1ed",
            "https://media.githubusercontent.com/media/opencv/opencv_zoo/main/models/facial_expression_recognition/"
            "facial_expression_recognition_mobilefacenet_2022july_int8.onnx",
            "Apache-2.0", "emotion", "(N,3,112,112) RGB (x/255-0.5)/0.5, ArcFace-aligned; RAF-DB (int8)",
            ("angry", "disgust", "fearful", "happy", "neutral", "sad", "surprised"),
        ),
        ModelSpec(
            "emostream_mtl", "emostream_mtl_v1.pt",
            MTL_SHA256,
            "", "MIT (code); weights trained on FER+ (labels MIT, images research use) and UTKFace "
            "(non-commercial research only)", "multitask",
            "aligned BGR crop; 0.8 x face square, gray 48x48; emotion (FER+ 8), P(man), age bins 0-100, "
            "128-D embedding", ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
            "contempt"), in_mirror=False, bundled=True,
        ),
        ModelSpec(
            "hsemotion_enet_b0_8", "enet_b0_8_best_afew.onnx",
            "5c4661a630d6fb3686ad576b2d561d694ced51251d81a6330303bb779ca24f42",
            f"{_HSE}/enet_b0_8_best_afew.onnx",
            "Apache-2.0", "emotion", "(N,3,224,224) RGB, ImageNet mean/std",
            ("anger", "contempt", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"),
            size_bytes=16_062_418, in_mirror=False,
        ),
    ]
}
# fmt: on


class UnknownModelError(ModelStoreError, KeyError):
    """A model name that is not registered (still a KeyError for callers that catch that)."""

    __str__ = Exception.__str__  # KeyError would quote the message


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered model; an unknown name lists the valid ones."""
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise UnknownModelError(f"unknown model {name!r}; known models: {known}") from None

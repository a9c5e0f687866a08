import cv2
import numpy as np
import pytest

from pipeline.frames import FaceBatch
from pipeline.stages.align import (
    BOX_FACE_DY,
    BOX_FACE_SIDE,
    crop_faces,
    crop_matrices,
    similarity_matrices,
    template_in_crop,
)
from tests.builders import make_batch


def _landmarks_at(center_xy, eye_dist_px, angle_deg):
    """Template landmarks placed in an image by a known similarity (rotation about the face center)."""
    t = template_in_crop(1, 1.0) - 0.5  # unit template centred on the face square
    unit_eye_dist = np.linalg.norm(t[1] - t[0])
    c, s = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
    rot = np.array([[c, -s], [s, c]]) * eye_dist_px / unit_eye_dist
    return (t @ rot.T + center_xy).astype(np.float32)


def _dots_image(landmarks, wh=(640, 480), radius=3):
    img = np.zeros((wh[1], wh[0], 3), np.uint8)
    for x, y in landmarks:
        cv2.circle(img, (round(x * 16), round(y * 16)), radius * 16, (255, 255, 255), -1, cv2.LINE_AA, 4)
    return img


def _blob_centroids(crop):
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY).astype(np.float64)
    n, labels = cv2.connectedComponents((gray > 20).astype(np.uint8))
    return np.array(
        [
            np.average(np.argwhere(labels == i)[:, ::-1], axis=0, weights=gray[labels == i])
            for i in range(1, n)
        ]
    )


def _batch_with_landmarks(landmarks, box=None):
    lms = np.asarray(landmarks, np.float32).reshape(-1, 5, 2)
    boxes = box if box is not None else np.concatenate([lms.min(1) - 20, lms.max(1) + 20], axis=1)
    return FaceBatch.from_boxes(0, 0.0, boxes, landmarks=lms)


@pytest.mark.parametrize("n", [0, 1, 3])
@pytest.mark.parametrize(("size", "scale"), [(128, 2.0), (64, 1.5)])
def test_crop_shapes_and_dtype(n, size, scale):
    boxes = [[10 + 50 * i, 20, 60 + 50 * i, 80] for i in range(n)]
    image = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    crops = crop_faces(image, make_batch(boxes), size=size, scale=scale)
    assert crops.shape == (n, size, size, 3) and crops.dtype == np.uint8
    assert crop_matrices(make_batch(boxes), size, scale).shape == (n, 2, 3)


@pytest.mark.parametrize(
    ("center", "eye_dist", "angle"),
    [
        ((320, 240), 40, 0),  # frontal, upright
        ((300, 260), 40, 30),  # head rolled 30 degrees: the crop must undo it
        ((330, 220), 60, -30),
        ((320, 240), 150, 12),  # big face: shrunk > 2x, warped from a pyramid level
        ((20, 30), 30, 0),  # face at the image corner: crop reaches outside the image
    ],
)
def test_landmarks_land_on_template(center, eye_dist, angle):
    lms = _landmarks_at(np.array(center, float), eye_dist, angle)
    crop = crop_faces(_dots_image(lms), _batch_with_landmarks(lms))[0]
    found = _blob_centroids(crop)
    want = template_in_crop(128, 2.0)
    assert len(found) == 5
    nearest = np.linalg.norm(found[:, None] - want[None], axis=2).min(axis=0)
    assert nearest.max() < 1.0
    eyes = found[np.argsort(found[:, 1])[:2]]
    assert abs(eyes[0, 1] - eyes[1, 1]) < 1.0  # eyes level after undoing the roll


@pytest.mark.parametrize("angle", [0, 30, -45, 90])
def test_similarity_matrix_maps_landmarks_to_template(angle):
    lms = _landmarks_at(np.array([200.0, 150.0]), 50, angle)
    mat = similarity_matrices(lms[None], 112, 1.0)[0]
    mapped = lms @ mat[:, :2].T + mat[:, 2]
    np.testing.assert_allclose(mapped, template_in_crop(112, 1.0), atol=1e-3)


@pytest.mark.parametrize(
    "landmarks",
    [np.full((5, 2), np.nan), np.r_[np.zeros((4, 2)), [[np.nan, 1]]], np.ones((5, 2))],
    ids=["all-nan", "one-nan", "collapsed"],
)
def test_similarity_matrix_is_nan_without_usable_landmarks(landmarks):
    assert np.isnan(similarity_matrices(landmarks[None])).all()


@pytest.mark.parametrize(
    ("box", "size", "scale"), [([100, 50, 180, 150], 128, 2.0), ([20, 30, 80, 70], 96, 1.25)]
)
def test_box_fallback_centres_the_face_square(box, size, scale):
    """No landmarks: a drawn box comes out upright, its face square in the central 1/scale of the crop."""
    image = np.zeros((240, 320, 3), np.uint8)
    cv2.rectangle(image, box[:2], (box[2] - 1, box[3] - 1), (255, 255, 255), -1)
    crops = crop_faces(image, FaceBatch.from_boxes(0, 0.0, [box]), size, scale)
    ys, xs = np.nonzero(cv2.cvtColor(crops[0], cv2.COLOR_BGR2GRAY) > 127)
    side = max(box[2] - box[0], box[3] - box[1])
    px_per_box_px = size / (scale * BOX_FACE_SIDE * side)
    want_center = np.array([size / 2, size / 2 - BOX_FACE_DY * side * px_per_box_px])
    want_wh = np.array([box[2] - box[0], box[3] - box[1]]) * px_per_box_px
    got_wh = np.array([xs.max() - xs.min() + 1, ys.max() - ys.min() + 1])
    assert np.abs(np.array([xs.mean(), ys.mean()]) - want_center).max() < 1.0
    assert np.abs(got_wh - want_wh).max() < 2.0


@pytest.fixture(scope="module")
def yunet(models_dir):
    model = models_dir / "face_detection_yunet_2023mar.onnx"
    return cv2.FaceDetectorYN.create(str(model), "", (320, 320), 0.6)


PHOTOS = [
    "fer_justin_smile.jpg",
    "pyfeat_multi_face_5.jpg",
    "pyfeat_surprise_f1.jpg",
    "mtcnn_man_small_face.jpg",
]


@pytest.mark.parametrize("photo", PHOTOS)
def test_box_and_landmark_paths_place_real_faces_alike(photo, media_dir, yunet):
    """On real YuNet detections both paths put eyes and mouth at about the same crop position and scale."""
    image = cv2.imread(str(media_dir / photo))
    yunet.setInputSize((image.shape[1], image.shape[0]))
    rows = yunet.detect(image)[1]
    assert rows is not None
    boxes = np.c_[rows[:, :2], rows[:, :2] + rows[:, 2:4]]
    lms = rows[:, 4:14].reshape(-1, 5, 2)
    by_lms = crop_matrices(FaceBatch.from_boxes(0, 0.0, boxes, landmarks=lms))
    by_box = crop_matrices(FaceBatch.from_boxes(0, 0.0, boxes))
    for lm, m_lm, m_box in zip(lms, by_lms, by_box, strict=True):
        key = np.stack([lm[:2].mean(0), lm[3:].mean(0)])  # eye and mouth midpoints
        p_lm, p_box = key @ m_lm[:, :2].T + m_lm[:, 2], key @ m_box[:, :2].T + m_box[:, 2]
        assert np.abs(p_lm - p_box).max() < 0.05 * 128
        ratio = np.linalg.norm(p_box[1] - p_box[0]) / np.linalg.norm(p_lm[1] - p_lm[0])
        assert 0.85 < ratio < 1.15
    crops = crop_faces(image, FaceBatch.from_boxes(0, 0.0, boxes, landmarks=lms))
    assert crops.shape == (len(rows), 128, 128, 3) and crops.std() > 10  # real pixels, not padding

"""What the labelled photos in ../shared/media show (../shared/README.md, media/SOURCES.md): one table for
the tests and for tools/models_table.py, so the docs and the tests measure against the same labels."""

LABELLED_PHOTOS: dict[str, str] = {
    "pyfeat_surprise_f1.jpg": "surprise",
    "pyfeat_happy_f15.jpg": "happy",
    "pyfeat_angry_f13.jpg": "angry",
    "pyfeat_disgust_m7.jpg": "disgust",
    "pyfeat_single_face_smile.jpg": "happy",
    "pyfeat_neutral_man.jpg": "neutral",
    "fer_justin_smile.jpg": "happy",
    "pyfeat_multi_face_5.jpg": "happy",
}
"""Posed expression of every face in each photo."""

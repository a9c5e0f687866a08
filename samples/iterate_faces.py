"""Iterate over a video's faces with the Python API and print each track's emotion changes.

python samples/iterate_faces.py ../shared/media/pexels_woman_emotions.mp4
"""

import sys

from pipeline.api import analyze
from pipeline.frames import EMOTIONS


def main(path: str) -> None:
    last: dict[int, str] = {}
    for frame, faces in analyze(path):
        smooth = faces.outputs.get("emotion_smooth")
        for i, track_id in enumerate(faces.track_ids):
            if track_id < 0 or smooth is None:
                continue
            emotion = EMOTIONS[int(smooth[i].argmax())]
            if last.get(track_id) != emotion:
                print(f"{frame.time_s:7.2f} s  track {track_id}: {emotion} ({smooth[i].max():.0%})")
                last[track_id] = emotion


if __name__ == "__main__":
    main(sys.argv[1])

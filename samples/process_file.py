"""Process a file into every output `emostream run` writes, then print the clip's emotion distribution.

python samples/process_file.py ../shared/media/pyfeat_single_face.mp4 results/
"""

import sys
from pathlib import Path

from pipeline.config import AnalyzerConfig
from pipeline.runtime.offline import OfflineJob, run_job


def main(video: str, out: str) -> None:
    job = OfflineJob(input=video, out_dir=Path(out), analyzer=AnalyzerConfig(detect_every=2), overwrite=True)
    summary = run_job(job)
    print(f"{summary['frames_processed']} frames at {summary['timings']['end_to_end_fps']} fps")
    for emotion, p in sorted(summary["clip_emotion"].items(), key=lambda kv: -kv[1]):
        print(f"{emotion:>9} {p:6.1%} {'#' * round(40 * p)}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

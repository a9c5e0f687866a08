"""`emostream run DIR | GLOB | LIST.txt --out DIR`: many inputs, one output folder each, and index.csv;
on this machine, or with `--engine ray` one video per Ray worker (docs/distributed.md).

Exit codes: 0 every input done or finished earlier; 3 some input failed or was only partly readable (each
named on stderr, the rest still processed); 130 interrupted (the inputs finished so far keep their
marker, so a re-run goes on from there); 2 when no input was found at all.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.cli.common import EXIT_INTERRUPTED, EXIT_PARTIAL, UsageError, engine_args, offline_job

INTERRUPTED = "emostream: interrupted; a re-run goes on with the unfinished inputs"


def cmd_batch(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pipeline.distributed.engine import LocalEngine
    from pipeline.runtime.batch import INDEX, expand_inputs, run_batch

    spread = engine_args(args)
    if spread is None and args.workers not in (None, 1):
        raise UsageError("--workers needs --engine ray here: the local engine runs one input at a time")
    items = expand_inputs(args.input)
    if not items:
        raise UsageError(f"no video or image found in {' '.join(args.input)}")
    job = offline_job(args, "", args.out)
    tty = sys.stderr.isatty()
    files = tqdm(total=len(items), unit="file", desc="inputs", disable=not tty, position=0)
    frames = tqdm(unit="frame", disable=not tty or spread is not None, position=1, leave=False)

    def progress(item):
        frames.set_description_str(str(item.rel_out))
        return (lambda f, b: frames.update(1)), (lambda n: frames.reset(total=n))

    def on_result(r):
        files.update(1)
        if r.status in ("failed", "partial"):
            kind = "error" if r.status == "failed" else "warning"
            tqdm.write(f"emostream: {kind}: {r.input}: {r.error}", file=sys.stderr)

    with files, frames:
        try:
            results = run_batch(
                items, args.out, job, spread or LocalEngine(), progress=progress, on_result=on_result
            )
        except KeyboardInterrupt:  # between inputs, or at any time on Ray (its workers are stopped)
            print(INTERRUPTED, file=sys.stderr)
            return EXIT_INTERRUPTED
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "partial", "failed")}
    print(", ".join(f"{n} {s}" for s, n in counts.items()) + f" of {len(items)} inputs -> {args.out / INDEX}")
    if any(r.status == "interrupted" for r in results):
        print(INTERRUPTED, file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_PARTIAL if counts["failed"] or counts["partial"] else 0

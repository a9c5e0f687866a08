"""`emostream` command line. Heavy modules are imported only by the subcommand that needs them.

Exit codes: 0 done; 2 unusable input or bad usage (one line on stderr, no traceback); 3 input only
partly readable (what decoded was processed); 130 interrupted (outputs written so far are valid).
Every line printed is shown without the credentials a source URL may carry.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import warnings

from engines.errors import EmostreamError, EmostreamWarning  # light: exceptions only
from pipeline.cli.common import EXIT_INTERRUPTED, EXIT_USAGE, OneLineParser
from pipeline.cli.gpu import add_gpu_parsers
from pipeline.cli.live import add_live_parser
from pipeline.cli.models import add_models_parser
from pipeline.cli.run import add_run_parser
from pipeline.cli.score import add_score_parsers
from pipeline.cli.train import add_train_parsers
from pipeline.io.urls import redact_urls

DESCRIPTION = "Faces, their emotions, gender and age in videos, photos, cameras and streams."
EPILOG = (
    "exit codes: 0 done; 2 unusable input or bad usage; 3 input only partly readable (or, with many "
    "inputs, some failed); 130 interrupted (outputs written so far are complete). "
    "Models download on first use, or come from --models-dir."
)


def build_parser() -> argparse.ArgumentParser:
    import pipeline

    parser = OneLineParser(prog="emostream", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"emostream {pipeline.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_parser(sub)
    add_live_parser(sub)
    add_gpu_parsers(sub)
    add_score_parsers(sub)
    add_train_parsers(sub)
    add_models_parser(sub)
    return parser


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning):
    """The project's own warnings as one line on stderr; anyone else's as Python shows them."""
    if issubclass(category, EmostreamWarning):
        print(f"emostream: warning: {message}", file=sys.stderr, flush=True)
    else:
        _default(message, category, filename, lineno, file, line)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GLOG_minloglevel", "2")
    args = build_parser().parse_args(argv)

    # Ctrl-C / SIGINT and SIGTERM end a run cleanly. Installed explicitly: a process started in the
    # background by a non-interactive shell inherits SIGINT *ignored*, and Python then sets no handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    shown, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        return args.func(args)
    except EmostreamError as e:
        print(redact_urls(f"emostream: error: {e}"), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("emostream: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as e:  # disk full, permissions, a vanished folder: still one line, never a traceback
        where = f"{e.filename}: " if e.filename else ""
        print(redact_urls(f"emostream: error: {where}{e.strerror or e}"), file=sys.stderr)
        return EXIT_USAGE
    finally:  # the outputs are final now: a late Ctrl-C must not turn the exit code into a signal death
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        warnings.showwarning = shown


if __name__ == "__main__":
    sys.exit(main())

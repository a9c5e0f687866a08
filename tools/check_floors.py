"""Do the declared dependency floors hold? Install the lowest version every direct dependency allows into a
fresh virtual environment and run the fast tests there.

    python tools/check_floors.py [--keep DIR] [--pytest-args "-m 'not slow' -q"] [--report FILE]

Reads `[project] dependencies` and the `dev` extra from pyproject.toml; each `name>=X` becomes `name==X`
(an exact pin `==X` stays, a range `>=X,<Y` takes X). Transitive dependencies are whatever pip picks
beside those pins. The tests run on a copy of the working tree (tracked and untracked, not ignored files),
so editing the tree while it runs changes nothing; the model mirror and media are read from
EMOSTREAM_SHARED_DIR (default: ../shared beside the repository). Exit code: pytest's, or 2 when the
floors cannot even be installed. Results go to docs/dependencies.md by hand (this prints what to paste).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAST_TESTS = "-m 'not slow and not gpu and not browser' -q -p no:cacheprovider"
_REQ = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(\[[^\]]*\])?\s*(.*)$")


def floor_pin(requirement: str) -> str:
    """'numpy>=1.26' -> 'numpy==1.26'; 'torch==2.13.0' stays; 'x>=10,<11' -> 'x==10'; a bare name stays."""
    match = _REQ.match(requirement.split(";")[0])
    if match is None:
        raise ValueError(f"cannot read the requirement {requirement!r}")
    name, extras, spec = match.group(1), match.group(2) or "", match.group(3).strip()
    clauses = [c.strip() for c in spec.split(",") if c.strip()]
    for op in ("==", ">=", "~="):
        for clause in clauses:
            if clause.startswith(op):
                return f"{name}{extras}=={clause[len(op) :].strip()}"
    return f"{name}{extras}"


def declared(pyproject: Path = REPO / "pyproject.toml", extras: tuple[str, ...] = ("dev",)) -> list[str]:
    """The direct requirements: the project's dependencies and the named extras."""
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project.get("optional-dependencies", {}).get(extra, [])
    return reqs


def copy_tree(dest: Path) -> Path:
    """The working tree's files (tracked and untracked, not ignored) copied to `dest`."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print("+", shlex.join(cmd), flush=True)
    return subprocess.run(cmd, **kw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="build the venv and the copy here and keep them")
    parser.add_argument("--pytest-args", default=FAST_TESTS, help=f"default: {FAST_TESTS}")
    parser.add_argument("--report", type=Path, help="also write the pins, versions and outcome here")
    parser.add_argument("--reuse", action="store_true", help="with --keep: install the pins into its venv")
    args = parser.parse_args(argv)

    work = args.keep or Path(tempfile.mkdtemp(prefix="emostream-floors-"))
    work.mkdir(parents=True, exist_ok=True)
    venv, tree = work / "venv", work / "tree"
    if not (args.reuse and (venv / "bin" / "python").exists()):
        shutil.rmtree(venv, ignore_errors=True)
    shutil.rmtree(tree, ignore_errors=True)
    copy_tree(tree)
    pins = [floor_pin(r) for r in declared()]
    print("floors:", " ".join(pins), flush=True)
    t0 = time.monotonic()
    if not (venv / "bin" / "python").exists():
        _run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    install = _run([py, "-m", "pip", "install", "-q", *pins])
    if install.returncode != 0:
        print("the declared floors do not install together (see pip's message above)", file=sys.stderr)
        return 2
    _run([py, "-m", "pip", "install", "-q", "--no-deps", "-e", str(tree)])
    versions = _run([py, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True).stdout
    env = {
        **os.environ,
        "EMOSTREAM_SHARED_DIR": os.environ.get("EMOSTREAM_SHARED_DIR", str(REPO.parent / "shared")),
    }
    env.pop("EMOSTREAM_CACHE_DIR", None)
    print("+ pytest", args.pytest_args, flush=True)
    proc = subprocess.Popen(
        [py, "-m", "pytest", *shlex.split(args.pytest_args)],
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out_lines = []
    for line in proc.stdout:  # streamed, so a hanging test shows where it hangs
        print(line, end="", flush=True)
        out_lines.append(line.rstrip("\n"))
    proc.wait()
    tests = subprocess.CompletedProcess(proc.args, proc.returncode, "\n".join(out_lines), "")
    last = next((line for line in reversed(tests.stdout.splitlines()) if line.strip()), "")
    report = (
        f"pins: {' '.join(pins)}\nexit: {tests.returncode}\nresult: {last}\n"
        f"minutes: {(time.monotonic() - t0) / 60:.1f}\ninstalled:\n{versions}"
    )
    print(report)
    if args.report:
        args.report.write_text(report)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return tests.returncode


if __name__ == "__main__":
    sys.exit(main())

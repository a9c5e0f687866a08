"""`emostream models list|fetch|verify`: the pretrained models in the store."""

from __future__ import annotations

import argparse

from pipeline.cli.common import EXIT_USAGE, add_model_args


def add_models_parser(sub) -> None:
    models = sub.add_parser("models", help="list, fetch or verify the pretrained models")
    models.add_argument("action", choices=["list", "fetch", "verify"])
    models.add_argument("names", nargs="*", help="model names (default: all)")
    add_model_args(models)
    models.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    from engines.store.store import ModelStore

    store = ModelStore(mirror_dir=args.models_dir)
    names = args.names or None
    if args.action == "list":
        header = {"name": "NAME", "task": "TASK", "where": "WHERE", "licence": "LICENCE", "filename": "FILE"}
        for row in [header, *store.list_rows()]:
            print(
                f"{row['name']:<22} {row['task']:<9} {row['where']:<7} {row['licence']:<11} {row['filename']}"
            )
    elif args.action == "fetch":
        for path in store.fetch(names):
            print(path)
    else:
        rows = store.verify(names)
        for r in rows:
            print(f"{r.name:<22} {r.status:<8} {r.location or '-':<7} {r.path or ''}")
        if any(r.status == "corrupt" for r in rows):
            return EXIT_USAGE
    return 0

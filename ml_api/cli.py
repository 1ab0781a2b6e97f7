"""Command line: `python -m ml_api COMMAND` (or the `ml-api` script)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import ModelIntegrityError
from .settings import Settings


def _train_demo(args, settings: Settings) -> int:
    from .training import demo_models_present, train_demo_models

    if args.if_missing and demo_models_present(settings.models_dir):
        print(f"demo models already in {settings.models_dir}")
        return 0
    for spec in train_demo_models(settings.models_dir):
        print(f"trained {spec.key}: {json.dumps(spec.metrics)} -> {spec.path}")
    return 0


def _check_models(_args, settings: Settings) -> int:
    from .model_registry import verify_all

    for spec in verify_all(settings.models_dir):
        print(f"ok {spec.key} sha256={spec.sha256}")
    return 0


def _init_db(_args, settings: Settings) -> int:
    from .wiring import init_database

    init_database(settings)
    print(f"database ready: {settings.effective_database_url.split('@')[-1]}")
    return 0


def _register_model(args, settings: Settings) -> int:
    from .model_registry import register_model

    spec = register_model(
        settings.models_dir, Path(args.artifact), name=args.name, version=args.version,
        feature_names=[f.strip() for f in args.features.split(",") if f.strip()],
        metrics=json.loads(args.metrics), description=args.description,
    )
    print(f"registered {spec.key} sha256={spec.sha256}; run `python -m ml_api init-db` "
          "to record it in the database")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ml_api", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train-demo", help="train the control and variation demo models")
    train.add_argument("--if-missing", action="store_true", help="skip when already trained")
    train.set_defaults(run=_train_demo)
    sub.add_parser("check-models", help="verify every artifact against the manifest's sha256") \
        .set_defaults(run=_check_models)
    sub.add_parser("init-db", help="migrate the schema, register models, create the demo "
                   "experiment").set_defaults(run=_init_db)
    reg = sub.add_parser("register-model", help="add a joblib artifact to the manifest")
    reg.add_argument("--artifact", required=True)
    reg.add_argument("--name", required=True)
    reg.add_argument("--version", required=True)
    reg.add_argument("--features", required=True, help="comma-separated feature names, in order")
    reg.add_argument("--metrics", default="{}", help="held-out metrics as a JSON object")
    reg.add_argument("--description", default="")
    reg.set_defaults(run=_register_model)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args, Settings.from_env())
    except ModelIntegrityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

"""Command line: `python -m ml_api COMMAND` (or the `ml-api` script)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ml_api.errors import ModelIntegrityError
from ml_api.settings import Settings


def _train_demo(args, settings: Settings) -> int:
    from ml_api.serving.training import demo_models_present, train_demo_models

    if args.if_missing and demo_models_present(settings.models_dir):
        print(f"demo models already in {settings.models_dir}")
        return 0
    for spec in train_demo_models(settings.models_dir):
        print(f"trained {spec.key}: {json.dumps(spec.metrics)} -> {spec.path}")
    return 0


def _check_models(_args, settings: Settings) -> int:
    from ml_api.serving.registry import verify_all

    for spec in verify_all(settings.models_dir):
        print(f"ok {spec.key} sha256={spec.sha256}")
    return 0


def _init_db(_args, settings: Settings) -> int:
    from ml_api.wiring import init_database

    init_database(settings)
    print(f"database ready: {settings.effective_database_url.split('@')[-1]}")
    return 0


def _register_model(args, settings: Settings) -> int:
    import numpy as np

    from ml_api.serving.registry import reference_of, register_model

    reference = None
    if args.reference_csv:  # a header line, then one training row per line
        reference = reference_of(np.loadtxt(args.reference_csv, delimiter=",", ndmin=2,
                                            skiprows=1))
    spec = register_model(
        settings.models_dir, Path(args.artifact), name=args.name, version=args.version,
        feature_names=[f.strip() for f in args.features.split(",") if f.strip()],
        metrics=json.loads(args.metrics), description=args.description, reference=reference,
    )
    print(f"registered {spec.key} sha256={spec.sha256}; run `python -m ml_api init-db` "
          "to record it in the database")
    return 0


def _services(settings: Settings):
    from ml_api.wiring import build_services

    return build_services(settings, ship_actions=bool(settings.logstash_host))


def _print(value) -> None:
    print(json.dumps(value, indent=2, default=str))


def _experiments(args, settings: Settings) -> int:
    """The admin API's operations, from a terminal (same service, same audit log)."""
    from ml_api.errors import ApiError

    services = _services(settings)
    admin = services.admin
    actor = f"cli:{os.environ.get('USER', 'unknown')}"
    body = json.loads(Path(args.file).read_text()) if getattr(args, "file", None) else None
    operations = {
        "list": lambda: admin.list(),
        "show": lambda: admin.get(args.name),
        "create": lambda: admin.create(body, actor),
        "patch": lambda: admin.patch(args.name, body, actor),
        "start": lambda: admin.transition(args.name, "start", actor),
        "pause": lambda: admin.transition(args.name, "pause", actor),
        "stop": lambda: admin.transition(args.name, "stop", actor),
        "promote": lambda: admin.promote(args.name, {"variant": args.variant}, actor),
        "results": lambda: admin.results(args.name),
        "audit": lambda: admin.audit(args.name),
    }
    try:
        _print(operations[args.operation]())
    except ApiError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    finally:
        services.request_events.shipper.wait_sent(5)  # the change's event, to Logstash
    return 0


def _reconcile(args, settings: Settings) -> int:
    """Compare the result counters with a recount of the raw rows, and list the spooled
    outcomes that went to the dead letters."""
    services = _services(settings)
    experiment = services.store.load_experiment(args.name)
    if experiment is None:
        print(f"error: no experiment named {args.name!r}", file=sys.stderr)
        return 1
    exposures, _ = services.exposures.exposure_counters(experiment.id)
    sums = services.exposures.metric_sums(experiment.id, experiment.metric)
    raw_exposures, raw_sums = services.exposures.recount(experiment.id, experiment.metric)
    same = ({k: v for k, v in exposures.items() if v} == raw_exposures
            and {k: v for k, v in sums.items() if v.events} == raw_sums)
    from ml_api.records.dead_letters import DeadLetters

    dead_letters = DeadLetters(services.store.engine).of_experiment(experiment.id)
    _print({"experiment": args.name, "consistent": same, "dead_letters": dead_letters,
            "counters": {"exposures": exposures, "metric": {k: vars(v) for k, v in sums.items()}},
            "raw": {"exposures": raw_exposures,
                    "metric": {k: vars(v) for k, v in raw_sums.items()}}})
    return 0 if same else 1


def _aa_study(args, _settings: Settings) -> int:
    from ml_api.stats.aa_study import run_aa_study

    _print(run_aa_study(experiments=args.experiments, users_per_arm=args.users,
                        look_every=args.look_every))
    return 0


def _supervise(args, settings: Settings) -> int:
    services = _services(settings)
    for action in services.supervisor.tick():
        print(action)
    services.request_events.shipper.wait_sent(5)
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
    reg.add_argument("--reference-csv", help="training rows (CSV with a header line, "
                     "features in order): their means and standard deviations go to the "
                     "manifest, to check the model's fast path on")
    reg.set_defaults(run=_register_model)

    exp = sub.add_parser("experiments", help="create, change and read experiments")
    ops = exp.add_subparsers(dest="operation", required=True)
    ops.add_parser("list")
    for operation in ("show", "start", "pause", "stop", "results", "audit"):
        ops.add_parser(operation).add_argument("name")
    ops.add_parser("create").add_argument("--file", required=True, help="experiment JSON")
    patch = ops.add_parser("patch")
    patch.add_argument("name")
    patch.add_argument("--file", required=True, help="JSON of weights and settings")
    promote = ops.add_parser("promote")
    promote.add_argument("name")
    promote.add_argument("variant")
    exp.set_defaults(run=_experiments)

    rec = sub.add_parser("reconcile", help="check result counters against the raw rows")
    rec.add_argument("name")
    rec.set_defaults(run=_reconcile)
    aa = sub.add_parser("aa-study", help="false-positive rates under continuous monitoring")
    aa.add_argument("--experiments", type=int, default=500)
    aa.add_argument("--users", type=int, default=10_000, help="users per arm")
    aa.add_argument("--look-every", type=int, default=100)
    aa.set_defaults(run=_aa_study)
    sub.add_parser("supervise", help="run one auto-stop / canary pass now") \
        .set_defaults(run=_supervise)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args, Settings.from_env())
    except ModelIntegrityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

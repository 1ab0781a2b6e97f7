"""The one place that builds the service's parts from Settings and connects them."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from ml_api.assignment.caches import AssignmentCache, InProcessAssignmentCache, RedisAssignmentCache
from ml_api.assignment.sticky import StickyAssigner
from ml_api.assignment.write_ahead import WriteAhead
from ml_api.domain.experiments import RUNNING, Variant
from ml_api.errors import BackendUnavailable, SchemaNotInitialised, StorageUnavailable
from ml_api.experiments.admin import ExperimentAdmin
from ml_api.experiments.catalog import ExperimentCatalog, live_experiments
from ml_api.experiments.change_signal import ChangeSignal, RelayedSignal
from ml_api.experiments.shadow import ShadowRunner
from ml_api.experiments.supervisor import ExperimentSupervisor
from ml_api.experiments.traffic import TrafficRecorder
from ml_api.records.ahead_log import AheadLog
from ml_api.records.dead_letters import DeadLetters
from ml_api.records.engine import make_engine, schema_is_current, upgrade_schema, utcnow
from ml_api.records.experiment_store import ExperimentStore
from ml_api.records.exposures import ExposureStore
from ml_api.records.labels import LabelStore
from ml_api.records.shadow import ShadowStore
from ml_api.records.looks import LookStore
from ml_api.records.snapshots import SnapshotStore
from ml_api.records.spool import Spool
from ml_api.records.traffic import TrafficStore
from ml_api.serving.feedback import OutcomeService
from ml_api.serving.label_tokens import LabelSigner
from ml_api.serving.prediction import PredictionService
from ml_api.serving.registry import ModelRegistry, verify_all
from ml_api.serving.training import CONTROL_KEY, VARIATION_KEY
from ml_api.settings import Settings
from ml_api.telemetry.logs import ship_logs
from ml_api.telemetry.request_log import RequestEvents
from ml_api.telemetry.shipping import EventShipper, StdoutTransport, logstash_transport

log = logging.getLogger(__name__)

ASSIGNMENT_TTL_SECONDS = 90 * 24 * 3600
# /ready reports spooled records older than this: exposures written ahead wait a moment.
SPOOL_LAG_SECONDS = 10.0


@dataclass
class Services:
    """Every part of one process, connected; the HTTP layer and the CLI receive it."""

    settings: Settings
    registry: ModelRegistry
    store: ExperimentStore
    exposures: ExposureStore
    labels: LabelStore
    shadow_records: ShadowStore
    cache: AssignmentCache | None
    catalog: ExperimentCatalog
    assigner: StickyAssigner
    prediction: PredictionService
    outcomes: OutcomeService
    admin: ExperimentAdmin
    shadow: ShadowRunner
    traffic: TrafficRecorder
    supervisor: ExperimentSupervisor
    request_events: RequestEvents
    spool: Spool
    relay: RelayedSignal | None = None
    write_ahead: WriteAhead | None = None

    def start(self) -> None:
        """Start this process's background work: the supervisor, and listening for other
        hosts' experiment changes."""
        self.supervisor.start(self.settings.supervisor_interval_seconds)
        if self.relay is not None:
            self.relay.start()

    def drain(self, timeout: float = 5.0) -> None:
        """Write out what this process holds only in memory, before it exits (gunicorn's
        worker_exit): queued shadow predictions, the per-variant traffic counts (to the
        database; kept for a later flush if it is down), and the pending request records
        as events and metrics. Each step bounded by `timeout`."""
        self.supervisor.stop()
        if self.relay is not None:
            self.relay.stop()
        try:
            self.shadow.drain(timeout)
        except TimeoutError:
            log.warning("shadow predictions still queued at exit were not recorded")
        self.traffic.flush(utcnow())
        if self.write_ahead is not None:
            try:
                self.write_ahead.close()
            except StorageUnavailable as exc:  # a surviving worker's replay writes them
                log.warning("exposures written ahead left in the spool at exit: %s", exc)
        if not self.request_events.flush(timeout):
            log.warning("%d request events not sent within %.0f s of the worker's exit, lost",
                        self.request_events.shipper.pending, timeout)

    def readiness(self) -> dict[str, str]:
        """'ok' or the reason, for each dependency /ready checks."""
        checks = {"models": "ok" if len(self.registry) else "no models loaded"}
        pending = self.spool.pending(older_than=SPOOL_LAG_SECONDS)
        checks["spool"] = "ok" if not pending else f"{pending} records waiting for the database"
        pings = [("database", self.store.ping)]
        if self.cache is not None:
            pings.insert(0, ("cache", self.cache.ping))
        for name, ping in pings:
            try:
                ping()
                checks[name] = "ok"
            except BackendUnavailable as exc:
                checks[name] = str(exc)
        return checks


def build_shared_cache(settings: Settings) -> AssignmentCache | None:
    """Redis when REDIS_URL is set; None on the embedded default (memory + SQLite only)."""
    if not settings.redis_url:
        return None
    return RedisAssignmentCache(settings.redis_url, settings.redis_prefix,
                                settings.redis_timeout_ms, ASSIGNMENT_TTL_SECONDS)


def build_request_events(settings: Settings) -> RequestEvents:
    """Events to Logstash when LOGSTASH_HOST is set, else JSON lines on stdout."""
    transport = (logstash_transport(settings.logstash_host, settings.logstash_port,
                                    settings.logstash_protocol, timeout=2.0)
                 if settings.logstash_host else StdoutTransport())
    holder: list[RequestEvents] = []
    shipper = EventShipper(transport, max_queue=settings.log_queue_max,
                           on_tick=lambda: holder[0].emit_latency_summary())
    events = RequestEvents(shipper, settings.log_uid, settings.log_uid_salt)
    holder.append(events)
    if settings.logstash_host:  # on stdout the log lines are there already
        ship_logs(shipper)
    return events


def build_services(settings: Settings, ship_actions: bool = True) -> Services:
    """Load verified models and connect to the cache and database (call once per process).
    `ship_actions`: send an event for every change to an experiment (off for a terminal
    command without Logstash: its events would go to its own standard output)."""
    registry = ModelRegistry.load(settings.models_dir)
    engine = make_engine(settings.effective_database_url)
    if not schema_is_current(engine):
        raise SchemaNotInitialised(
            "the database schema is missing or out of date: run `python -m ml_api init-db`")
    store, exposures, shadow_records = (ExperimentStore(engine), ExposureStore(engine),
                                        ShadowStore(engine))
    labels, signer = LabelStore(engine), LabelSigner(settings.label_signing_secret)
    cache = build_shared_cache(settings)
    signal = ChangeSignal.beside(settings.spool_path)
    relay = (RelayedSignal(signal, settings.redis_url, f"{settings.redis_prefix}changes")
             if settings.redis_url else None)
    catalog = ExperimentCatalog(lambda: live_experiments(store, exposures),
                                settings.experiment_refresh_seconds, signal=relay or signal)
    catalog.refresh()
    spool = Spool(settings.spool_path, DeadLetters(engine), settings.spool_orphan_horizon_seconds)
    write_ahead = (WriteAhead(AheadLog.beside(settings.spool_path), exposures, cache)
                   if cache is not None else None)
    assigner = StickyAssigner(InProcessAssignmentCache(settings.local_cache_max_entries),
                              cache, exposures, spool, write_ahead)
    shadow, traffic = ShadowRunner(registry, shadow_records), TrafficRecorder(TrafficStore(engine))
    request_events = build_request_events(settings)
    snapshots = SnapshotStore(engine)
    admin = ExperimentAdmin(store, exposures, shadow_records, registry, catalog,
                            on_action=request_events.action if ship_actions else None,
                            snapshots=snapshots, labels=labels, looks=LookStore(engine))
    return Services(
        settings=settings, registry=registry, store=store, exposures=exposures, labels=labels,
        shadow_records=shadow_records, cache=cache, catalog=catalog, assigner=assigner,
        prediction=PredictionService(catalog, assigner, registry, settings.default_experiment,
                                     shadow, traffic, signer),
        outcomes=OutcomeService(catalog, exposures, settings.default_experiment, assigner,
                                spool, labels, signer, write_ahead),
        admin=admin, shadow=shadow, traffic=traffic,
        supervisor=ExperimentSupervisor(store, exposures, admin, traffic, spool=spool,
                                        snapshots=snapshots, labels=labels,
                                        write_ahead=write_ahead),
        request_events=request_events, spool=spool, relay=relay, write_ahead=write_ahead,
    )


def init_database(settings: Settings) -> ExperimentStore:
    """Migrate the schema, register the manifest's models and create the demo experiment."""
    specs = verify_all(settings.models_dir)
    store = ExperimentStore(make_engine(settings.effective_database_url))
    upgrade_schema(store.engine)
    store.sync_models(specs)
    keys = {spec.key for spec in specs}
    if ({CONTROL_KEY, VARIATION_KEY} <= keys
            and not store.experiment_exists(settings.default_experiment)):
        store.create_experiment(
            settings.default_experiment,
            [Variant("control", CONTROL_KEY, 50), Variant("variation", VARIATION_KEY, 50)],
            status=RUNNING,
        )
    return store

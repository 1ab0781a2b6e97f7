"""Service settings, read once from the environment (see api.env and the README's table)."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

from ml_api.errors import ConfigurationError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Where the embedded database and the spool live unless VAR_DIR says otherwise: var/ of the
# source checkout. An installed package (site-packages) needs VAR_DIR; the image sets it.
DEFAULT_VAR_DIR = PROJECT_ROOT / "var"


@dataclass(frozen=True)
class Settings:
    """Every setting of the service, read once from the environment (`from_env`)."""

    database_url: str = ""
    redis_url: str = ""
    redis_prefix: str = "ml_api:"
    redis_timeout_ms: int = 50
    models_dir: Path = PROJECT_ROOT / "models"
    default_experiment: str = "demo"
    max_body_bytes: int = 64 * 1024
    experiment_refresh_seconds: float = 2.0
    local_cache_max_entries: int = 1_000_000
    admin_token: str = ""
    label_secret: str = ""
    supervisor_interval_seconds: float = 5.0
    logstash_host: str = ""
    logstash_port: int = 5044
    logstash_protocol: str = "tcp"
    log_uid: str = "hashed"
    log_uid_salt: str = "ml_api"
    log_queue_max: int = 10_000
    dashboard_public: bool | None = None  # None: public only in development
    kibana_url: str = ""  # Kibana as analysts' browsers reach it: results link to it
    var_dir: Path = DEFAULT_VAR_DIR
    spool_path: Path = DEFAULT_VAR_DIR / "spool.sqlite3"
    spool_orphan_horizon_seconds: float = 86400.0
    ml_api_env: str = "production"

    @property
    def effective_database_url(self) -> str:
        """The SQLAlchemy URL in use: DATABASE_URL, or the embedded SQLite file."""
        return self.database_url or f"sqlite:///{self.var_dir / 'ml_api.sqlite3'}"

    @property
    def uses_embedded_defaults(self) -> bool:
        return not self.database_url and not self.redis_url

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        base = cls()
        var_dir = Path(env.get("VAR_DIR") or base.var_dir)
        return cls(
            database_url=env.get("DATABASE_URL", "").strip(),
            redis_url=env.get("REDIS_URL", "").strip(),
            redis_prefix=env.get("REDIS_PREFIX", base.redis_prefix),
            redis_timeout_ms=int(env.get("REDIS_TIMEOUT_MS", base.redis_timeout_ms)),
            models_dir=Path(env.get("MODELS_DIR", base.models_dir)),
            default_experiment=env.get("DEFAULT_EXPERIMENT", base.default_experiment),
            max_body_bytes=int(env.get("MAX_BODY_BYTES", base.max_body_bytes)),
            experiment_refresh_seconds=float(
                env.get("EXPERIMENT_REFRESH_SECONDS", base.experiment_refresh_seconds)
            ),
            local_cache_max_entries=int(
                env.get("LOCAL_CACHE_MAX_ENTRIES", base.local_cache_max_entries)
            ),
            admin_token=env.get("ADMIN_TOKEN", "").strip(),
            label_secret=env.get("LABEL_SECRET", "").strip(),
            supervisor_interval_seconds=float(
                env.get("SUPERVISOR_INTERVAL_SECONDS", base.supervisor_interval_seconds)),
            logstash_host=env.get("LOGSTASH_HOST", "").strip(),
            logstash_port=int(env.get("LOGSTASH_PORT", base.logstash_port)),
            logstash_protocol=env.get("LOGSTASH_PROTOCOL", base.logstash_protocol).lower(),
            log_uid=env.get("LOG_UID", base.log_uid).lower(),
            log_uid_salt=env.get("LOG_UID_SALT", base.log_uid_salt),
            log_queue_max=int(env.get("LOG_QUEUE_MAX", base.log_queue_max)),
            dashboard_public=(None if not env.get("DASHBOARD_PUBLIC", "").strip() else
                              env["DASHBOARD_PUBLIC"].strip().lower() in ("1", "true", "yes")),
            kibana_url=env.get("KIBANA_URL", "").strip(),
            var_dir=var_dir,
            spool_path=Path(env.get("SPOOL_PATH") or var_dir / "spool.sqlite3"),
            spool_orphan_horizon_seconds=float(env.get(
                "SPOOL_ORPHAN_HORIZON_SECONDS", base.spool_orphan_horizon_seconds)),
            ml_api_env=env.get("ML_API_ENV", base.ml_api_env).strip().lower(),
        )

    @property
    def dashboard_is_public(self) -> bool:
        """/dashboard without the token: DASHBOARD_PUBLIC, else only in development."""
        if self.dashboard_public is not None:
            return self.dashboard_public
        return self.ml_api_env == "development"

    @property
    def label_signing_secret(self) -> str:
        """The key of label tokens: LABEL_SECRET, else ADMIN_TOKEN (neither leaks the other:
        the key is a hash of it), else a development key; shared by every worker and host."""
        return self.label_secret or self.admin_token or "development"

    def check(self) -> None:
        """Refuse settings that must not reach production."""
        if not self.admin_token and self.ml_api_env != "development":
            raise ConfigurationError(
                "ADMIN_TOKEN is not set: set a secret token, or ML_API_ENV=development to run "
                "with the admin API disabled")
        if self.log_uid not in ("hashed", "plain", "none"):
            raise ConfigurationError("LOG_UID must be hashed, plain or none")
        if self.logstash_protocol not in ("tcp", "udp"):
            raise ConfigurationError("LOGSTASH_PROTOCOL must be tcp or udp")

    def with_overrides(self, **changes) -> "Settings":
        return replace(self, **changes)

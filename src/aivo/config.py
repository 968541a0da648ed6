"""One typed Settings object for the whole service: every environment variable lives here.

Variables are read from the environment and from a `.env` file in the working directory.
Most carry the `AIVO_` prefix; the scheduler and training knobs named by the seed design
(`EARLY_STOPPING_PATIENCE`, `DRIFT_THRESHOLD`, ...) are also accepted without it.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from aivo.errors import ConfigError


def _env(name: str, *, seed_name: str | None = None) -> AliasChoices:
    """Accept `AIVO_<NAME>` and, where the seed design used one, its unprefixed name."""
    names = [f"AIVO_{name}"]
    if seed_name:
        names.append(seed_name)
    return AliasChoices(*names)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True,
        # Field names are matched only with the prefix (AIVO_HOME, never HOME or SEED).
        env_prefix="AIVO_",
    )

    # --- core -------------------------------------------------------------------------
    home: Path = Field(Path(".aivo"), validation_alias=_env("HOME"),
                       description="Data folder: SQLite database, artifacts, secret key, logs.")
    database_url: str | None = Field(None, validation_alias=_env("DATABASE_URL", seed_name="DATABASE_URL"),
                                     description="SQLAlchemy URL; default sqlite under AIVO_HOME.")
    artifact_url: str | None = Field(None, validation_alias=_env("ARTIFACT_URL"),
                                     description="Artifact store: a folder or an fsspec URL (s3://bucket/prefix).")
    artifact_options: str | None = Field(None, validation_alias=_env("ARTIFACT_OPTIONS"), repr=False,
                                         description="JSON object of fsspec storage options for AIVO_ARTIFACT_URL, "
                                                     'e.g. {"client_kwargs": {"endpoint_url": "http://minio:9000"}}.')
    secret_key: str | None = Field(None, validation_alias=_env("SECRET_KEY"), repr=False,
                                   description="HMAC key for learner pseudonyms. Required with PostgreSQL (at "
                                               "least 32 characters, 10 distinct); embedded mode creates "
                                               "AIVO_HOME/secret.key once.")
    log_level: str = Field("INFO", validation_alias=_env("LOG_LEVEL", seed_name="LOG_LEVEL"))
    log_json: bool = Field(False, validation_alias=_env("LOG_JSON"))
    seed: int = Field(0, validation_alias=_env("SEED"), description="Seed for every random choice.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", validation_alias=_env("DEVICE"))
    num_threads: int = Field(0, ge=0, validation_alias=_env("NUM_THREADS"),
                             description="torch intra-op threads; 0 = library default.")

    # --- Main Brain training ----------------------------------------------------------
    max_seq_len: int = Field(200, ge=2, validation_alias=_env("MAX_SEQ_LEN"),
                             description="Histories longer than this are cut into chunks.")
    learning_rate: float = Field(2e-3, gt=0, validation_alias=_env("LEARNING_RATE", seed_name="DEFAULT_LEARNING_RATE"))
    batch_size: int = Field(64, ge=1, validation_alias=_env("BATCH_SIZE", seed_name="DEFAULT_BATCH_SIZE"))
    max_epochs: int = Field(30, ge=1, validation_alias=_env("MAX_EPOCHS", seed_name="DEFAULT_EPOCHS"))
    early_stopping_patience: int = Field(3, ge=1, validation_alias=_env("EARLY_STOPPING_PATIENCE",
                                                                          seed_name="EARLY_STOPPING_PATIENCE"))
    hpo_trials: int = Field(4, ge=0, validation_alias=_env("HPO_TRIALS"),
                            description="Optuna trials per pipeline run (0 disables tuning).")
    hpo_timeout_s: float = Field(600.0, gt=0, validation_alias=_env("HPO_TIMEOUT_S"))
    improvement_threshold: float = Field(0.02, ge=0, validation_alias=_env("IMPROVEMENT_THRESHOLD",
                                                                            seed_name="IMPROVEMENT_THRESHOLD"),
                                         description="Relative gain over the active version needed to promote.")

    # --- recommendation policy --------------------------------------------------------
    target_success: float = Field(0.7, gt=0, lt=1, validation_alias=_env("TARGET_SUCCESS"),
                                  description="Serve the item whose predicted success is closest to this.")
    mastery_level_up: float = Field(0.85, gt=0, lt=1, validation_alias=_env("MASTERY_LEVEL_UP"))
    mastery_level_down: float = Field(0.45, gt=0, lt=1, validation_alias=_env("MASTERY_LEVEL_DOWN"))
    recommendation_policy: Literal["aivo-gain", "aivo-target"] = Field(
        "aivo-gain", validation_alias=_env("RECOMMENDATION_POLICY"),
        description="Policy of the recommendations API when a request names none: aivo-gain (largest expected "
                    "gain in mastery, reviews before forgetting) or aivo-target (closest to the target success).")

    # --- personalization and federated learning ---------------------------------------
    freeze_layers: str = Field("encoder", validation_alias=_env("FREEZE_LAYERS"),
                               description="Comma-separated parameter prefixes frozen in a clone.")
    local_epochs: int = Field(5, ge=1, validation_alias=_env("LOCAL_EPOCHS"))
    local_learning_rate: float = Field(0.05, gt=0, validation_alias=_env("LOCAL_LEARNING_RATE"))
    fedprox_mu: float = Field(0.0, ge=0, validation_alias=_env("FEDPROX_MU"))
    aggregation_strategy: str = Field("fedavg", validation_alias=_env("AGGREGATION_STRATEGY"))
    min_learners: int = Field(5, ge=1, validation_alias=_env("MIN_LEARNERS"))
    max_stale_days: int = Field(7, ge=0, validation_alias=_env("MAX_STALE_DAYS"))
    server_learning_rate: float = Field(1.0, gt=0, validation_alias=_env("SERVER_LEARNING_RATE"))
    gate_margin: float = Field(0.0, ge=0, validation_alias=_env("GATE_MARGIN"),
                               description="A federated candidate may be this much worse (AUC) and still promote.")
    enable_differential_privacy: bool = Field(True, validation_alias=_env("ENABLE_DIFFERENTIAL_PRIVACY",
                                                                          seed_name="ENABLE_DIFFERENTIAL_PRIVACY"))
    noise_multiplier: float = Field(1.0, ge=0, validation_alias=_env("NOISE_MULTIPLIER", seed_name="NOISE_MULTIPLIER"))
    clip_norm: float = Field(1.0, gt=0, validation_alias=_env("CLIP_NORM", seed_name="CLIP_NORM"))
    sampling_rate: float = Field(1.0, gt=0, le=1, validation_alias=_env("SAMPLING_RATE"),
                                 description="Poisson rate q with which eligible learners are sampled per round.")
    epsilon_budget: float = Field(8.0, gt=0, validation_alias=_env("EPSILON_BUDGET"))
    delta: float = Field(1e-5, gt=0, lt=1, validation_alias=_env("DELTA"))
    accountant: Literal["rdp", "prv", "pld"] = Field("rdp", validation_alias=_env("ACCOUNTANT"))
    personal_l2: float = Field(5.0, ge=0, validation_alias=_env("PERSONAL_L2"),
                               description="Prior precision pulling a clone's personal parameters to the main model.")
    holdout_fraction: float = Field(0.2, gt=0, lt=1, validation_alias=_env("HOLDOUT_FRACTION"),
                                    description="A learner's most recent share of interactions held out of local "
                                                "training to decide between clone and main model (fallback rule).")
    fallback_confidence: float = Field(1.0, ge=0, validation_alias=_env("FALLBACK_CONFIDENCE"),
                                       description="Serve a clone only when its held-out improvement over the main "
                                                   "model is at least this many standard errors (0: when not worse).")
    personal_refit: bool = Field(True, validation_alias=_env("PERSONAL_REFIT"),
                                 description="After the fallback check, fit the clone's personal parameters again "
                                             "on all the learner's interactions, the held-out ones included.")
    local_dp_noise_multiplier: float = Field(0.0, ge=0, validation_alias=_env("LOCAL_DP_NOISE_MULTIPLIER"),
                                             description="Record-level DP-SGD in local training (0 = off).")
    local_dp_clip_norm: float = Field(1.0, gt=0, validation_alias=_env("LOCAL_DP_CLIP_NORM"))
    local_dp_window: int = Field(20, ge=2, validation_alias=_env("LOCAL_DP_WINDOW"),
                                 description="Interactions per DP-SGD record (window of a learner's history).")
    dp_weight_cap: float | None = Field(None, gt=0, validation_alias=_env("DP_WEIGHT_CAP"),
                                        description="Under user-level DP, strategy weights are divided by this cap "
                                                    "and clipped to 1 (default: 100 examples for fedavg).")
    reservoir_size: int = Field(256, ge=1, validation_alias=_env("RESERVOIR_SIZE"),
                                description="Updates kept by median / trimmed mean (exact up to this many).")
    gate_max_learners: int = Field(1000, ge=1, validation_alias=_env("GATE_MAX_LEARNERS"),
                                   description="Learners whose held-out interactions the aggregation gate scores.")

    # --- service ----------------------------------------------------------------------
    api_host: str = Field("127.0.0.1", validation_alias=_env("API_HOST"))
    api_port: int = Field(8000, ge=1, le=65535, validation_alias=_env("API_PORT"))
    api_workers: int = Field(1, ge=1, validation_alias=_env("API_WORKERS"))
    max_ingest_batch: int = Field(10_000, ge=1, validation_alias=_env("MAX_INGEST_BATCH"))
    recommendation_cache_ttl_s: float = Field(300.0, ge=0, validation_alias=_env("RECOMMENDATION_CACHE_TTL_S"),
                                              description="A cached recommendation is recomputed after this long "
                                                          "even without new interactions (0 = no cache).")
    recommendation_cache_size: int = Field(50_000, ge=1, validation_alias=_env("RECOMMENDATION_CACHE_SIZE"))
    learner_state_cache_size: int = Field(2_000, ge=1, validation_alias=_env("LEARNER_STATE_CACHE_SIZE"),
                                          description="Learners whose history and model state a process keeps "
                                                      "between recommendations (a later one reads only newer "
                                                      "interactions).")
    recommender_processes: int = Field(1, ge=0, validation_alias=_env("RECOMMENDER_PROCESSES"),
                                       description="Processes per API worker that compute uncached recommendations "
                                                   "(0 = in a thread of the worker).")
    api_key_cache_s: float = Field(5.0, ge=0, validation_alias=_env("API_KEY_CACHE_S"),
                                   description="Verified API keys are remembered this long per process: "
                                               "a revocation takes effect within this delay.")
    job_lease_s: float = Field(60.0, gt=0, validation_alias=_env("JOB_LEASE_S"),
                               description="A running job must renew its lease within this many seconds.")
    pii_names: str = Field("", validation_alias=_env("PII_NAMES"),
                           description="Comma-separated names scrubbed from free text (or @path to a file).")
    dashboard_session_hours: float = Field(8.0, gt=0, le=24 * 30, validation_alias=_env("DASHBOARD_SESSION_HOURS"),
                                           description="A dashboard sign-in lasts at most this long.")
    dashboard_idle_minutes: float = Field(60.0, gt=0, le=24 * 60, validation_alias=_env("DASHBOARD_IDLE_MINUTES"),
                                          description="A dashboard session unused this long ends.")

    # --- scheduler (names from the seed design) ---------------------------------------
    scheduler_enabled: bool = Field(True, validation_alias=_env("SCHEDULER_ENABLED"))
    timezone: str = Field("UTC", validation_alias=_env("TIMEZONE"))
    main_brain_training_schedule: str = Field("0 2 * * *", validation_alias=_env(
        "MAIN_BRAIN_TRAINING_SCHEDULE", seed_name="MAIN_BRAIN_TRAINING_SCHEDULE"))
    drift_check_interval_hours: float = Field(6, gt=0, validation_alias=_env(
        "DRIFT_CHECK_INTERVAL_HOURS", seed_name="DRIFT_CHECK_INTERVAL_HOURS"))
    weekly_retraining_day: str = Field("sunday", validation_alias=_env(
        "WEEKLY_RETRAINING_DAY", seed_name="WEEKLY_RETRAINING_DAY"))
    weekly_retraining_hour: int = Field(3, ge=0, le=23, validation_alias=_env(
        "WEEKLY_RETRAINING_HOUR", seed_name="WEEKLY_RETRAINING_HOUR"))
    adaptive_check_interval_hours: float = Field(2, gt=0, validation_alias=_env("ADAPTIVE_CHECK_INTERVAL_HOURS"))
    federated_aggregation_schedule: str = Field("0 4 * * sun", validation_alias=_env("FEDERATED_AGGREGATION_SCHEDULE"))
    min_training_interval_hours: float = Field(20, ge=0, validation_alias=_env(
        "MIN_TRAINING_INTERVAL_HOURS", seed_name="MIN_TRAINING_INTERVAL_HOURS"))
    drift_threshold: float = Field(0.15, gt=0, validation_alias=_env("DRIFT_THRESHOLD", seed_name="DRIFT_THRESHOLD"))

    # --- federation across sites (docs/federated.md, "Across sites") ----------------------
    site_name: str | None = Field(None, validation_alias=_env("SITE_NAME"),
                                  description="This registry's site name in a federation (set by `aivo site init`).")
    site_key: Path | None = Field(None, validation_alias=_env("SITE_KEY"),
                                  description="The site's private key (default: AIVO_HOME/site/site.key).")
    superlink: str = Field("127.0.0.1:9092", validation_alias=_env("SUPERLINK"),
                           description="host:port of the coordinator's Flower SuperLink.")
    federation_root_certificates: Path | None = Field(
        None, validation_alias=_env("FEDERATION_ROOT_CERTIFICATES"),
        description="CA certificate that signed the SuperLink's TLS certificate (sites and `aivo federation run`).")
    federation_message_log: Path | None = Field(
        None, validation_alias=_env("FEDERATION_MESSAGE_LOG"),
        description="Folder where the coordinator writes every message it receives from sites (audits).")

    # --- tutor brain ------------------------------------------------------------------
    brain_model: str | None = Field(None, validation_alias=AliasChoices("AIVO_TUTOR_MODEL", "AIVO_BRAIN_MODEL"),
                                    description="Causal LM: a local folder or a hub id (AIVO_TUTOR_MODEL, or "
                                                "the older AIVO_BRAIN_MODEL). Default: SmolLM2-135M-Instruct "
                                                "converted by `aivo tutor init` under AIVO_HOME/tutor/.")
    tutor_engine: Literal["local", "openai"] = Field(
        "local", validation_alias=_env("TUTOR_ENGINE"),
        description="local: transformers in this process; openai: an OpenAI-compatible server (vLLM, "
                    "llama.cpp server, Ollama) at AIVO_TUTOR_ENGINE_URL.")
    tutor_engine_url: str | None = Field(None, validation_alias=_env("TUTOR_ENGINE_URL"),
                                         description="Base URL of the upstream engine, e.g. http://gpu1:8000/v1.")
    tutor_engine_model: str | None = Field(None, validation_alias=_env("TUTOR_ENGINE_MODEL"),
                                           description="The base model's name on the upstream engine.")
    tutor_engine_api_key: str | None = Field(None, validation_alias=_env("TUTOR_ENGINE_API_KEY"))
    tutor_engine_adapter_prefix: str = Field(
        "aivo-", validation_alias=_env("TUTOR_ENGINE_ADAPTER_PREFIX"),
        description="A learner's adapter is requested from the engine as the model <prefix><learner pseudonym>.")
    tutor_engine_timeout_s: float = Field(120.0, gt=0, validation_alias=_env("TUTOR_ENGINE_TIMEOUT_S"))
    tutor_content_top_k: int = Field(3, ge=0, le=20, validation_alias=_env("TUTOR_CONTENT_TOP_K"),
                                     description="Lesson passages retrieved per question (0 = no grounding).")
    tutor_content_min_score: float = Field(
        0.45, ge=-1, le=1, validation_alias=_env("TUTOR_CONTENT_MIN_SCORE"),
        description="Lowest cosine similarity for a retrieved passage to be used.")
    tutor_content_layout: Literal["system", "user"] = Field(
        "system", validation_alias=_env("TUTOR_CONTENT_LAYOUT"),
        description="Where the retrieved passages are quoted: system (in the system prompt) or user (in the "
                    "learner's turn, right before the question).")
    tutor_content_quote: int = Field(
        2, ge=0, le=5, validation_alias=_env("TUTOR_CONTENT_QUOTE"),
        description="Sentences of the best-matching lesson passage that open a grounded answer, verbatim, "
                    "before the model's explanation (0: the model's text alone).")
    tutor_safety_classifier: bool = Field(
        True, validation_alias=_env("TUTOR_SAFETY_CLASSIFIER"),
        description="Combine the learned safety classifier with the lexical rules.")
    quantization: Literal["none", "4bit", "8bit"] = Field("none", validation_alias=_env("QUANTIZATION"))
    max_new_tokens: int = Field(128, ge=1, validation_alias=_env("MAX_NEW_TOKENS"))
    adapter_cache_size: int = Field(16, ge=1, validation_alias=_env("ADAPTER_CACHE_SIZE"))
    tutor_temperature: float = Field(0.7, ge=0, validation_alias=_env("TUTOR_TEMPERATURE"),
                                     description="Default sampling temperature (0 = greedy).")
    tutor_top_p: float = Field(0.9, gt=0, le=1, validation_alias=_env("TUTOR_TOP_P"))
    tutor_max_batch_size: int = Field(8, ge=1, validation_alias=_env("TUTOR_MAX_BATCH_SIZE"),
                                      description="Requests generated together (mixed LoRA adapters).")
    tutor_batch_window_ms: float = Field(5.0, ge=0, validation_alias=_env("TUTOR_BATCH_WINDOW_MS"),
                                         description="How long the batcher waits for more requests.")
    tutor_lora_r: int = Field(16, ge=1, validation_alias=_env("TUTOR_LORA_R"))
    tutor_lora_alpha: int = Field(32, ge=1, validation_alias=_env("TUTOR_LORA_ALPHA"))
    tutor_lora_dropout: float = Field(0.05, ge=0, lt=1, validation_alias=_env("TUTOR_LORA_DROPOUT"))
    tutor_lora_target_modules: str = Field("q_proj,v_proj", validation_alias=_env("TUTOR_LORA_TARGET_MODULES"))
    tutor_clone_epochs: int = Field(3, ge=1, validation_alias=_env("TUTOR_CLONE_EPOCHS"))
    tutor_clone_learning_rate: float = Field(2e-3, gt=0, validation_alias=_env("TUTOR_CLONE_LEARNING_RATE"))
    tutor_llm_feedback: Literal["auto", "on", "off"] = Field(
        "auto", validation_alias=_env("TUTOR_LLM_FEEDBACK"),
        description="Let the LLM write assessment feedback; auto = only when it is not the tiny model.")

    @field_validator("weekly_retraining_day")
    @classmethod
    def _weekday(cls, value: str) -> str:
        days = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
        short = {d[:3]: d for d in days}
        v = value.strip().lower()
        v = short.get(v, v)
        if v not in days:
            raise ValueError(f"must be a day of the week (monday..sunday), got {value!r}")
        return v

    @model_validator(mode="after")
    def _levels(self) -> "Settings":
        if self.mastery_level_down >= self.mastery_level_up:
            raise ValueError("AIVO_MASTERY_LEVEL_DOWN must be below AIVO_MASTERY_LEVEL_UP")
        return self

    # --- derived ----------------------------------------------------------------------
    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'aivo.db').resolve()}"

    @property
    def resolved_artifact_url(self) -> str:
        if self.artifact_url:
            return self.artifact_url
        return str((self.home / "artifacts").resolve())

    @property
    def resolved_artifact_options(self) -> dict:
        if not self.artifact_options:
            return {}
        try:
            options = json.loads(self.artifact_options)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"AIVO_ARTIFACT_OPTIONS is not valid JSON: {exc}") from exc
        if not isinstance(options, dict):
            raise ConfigError("AIVO_ARTIFACT_OPTIONS must be a JSON object")
        return options

    @property
    def is_embedded(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    def ensure_home(self) -> Path:
        if not self.home.exists():
            # Learners' data lives here (database, artifacts, key): the owner's only (0700).
            self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self.home

    def resolved_secret_key(self) -> bytes:
        """The pseudonymization key. Embedded mode keeps a generated key in AIVO_HOME.

        Production mode (a database that is not SQLite) requires AIVO_SECRET_KEY and refuses a
        weak one (`secret_key_weakness`); embedded mode only warns about a weak one."""
        if self.secret_key:
            weakness = secret_key_weakness(self.secret_key)
            if weakness and not self.is_embedded:
                raise ConfigError(f"AIVO_SECRET_KEY is too weak for production: {weakness}. Generate one with "
                                  "`python -c 'import secrets; print(secrets.token_hex(32))'` (changing the key "
                                  "changes every learner's pseudonym: set it before the first import)")
            if weakness:
                _warn_once(f"AIVO_SECRET_KEY is weak ({weakness}); production mode refuses such a key")
            return self.secret_key.encode()
        if not self.is_embedded:
            raise ConfigError("AIVO_SECRET_KEY must be set when AIVO_DATABASE_URL is not SQLite "
                              "(learner pseudonyms depend on it; keep it stable and secret).")
        path = self.ensure_home() / "secret.key"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
        return path.read_text().strip().encode()


MIN_SECRET_KEY_CHARS = 32
MIN_SECRET_KEY_DISTINCT = 10


def secret_key_weakness(key: str) -> str | None:
    """Why `key` is too weak to key learner pseudonyms (an HMAC-SHA256 key), or None. A
    guessable key lets anyone holding a list of real ids recompute the pseudonyms."""
    if len(key) < MIN_SECRET_KEY_CHARS:
        return f"{len(key)} characters, at least {MIN_SECRET_KEY_CHARS} are needed"
    if len(set(key)) < MIN_SECRET_KEY_DISTINCT:
        return f"only {len(set(key))} distinct characters, at least {MIN_SECRET_KEY_DISTINCT} are needed"
    return None


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        logging.getLogger(__name__).warning(message)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings. Tests build their own `Settings(...)` and pass it in."""
    return Settings()

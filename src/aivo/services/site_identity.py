"""A site's identity, its ClientApp, and the worker that runs it behind the SuperNode.

Only the round's training (`contribute`), evaluation and version installs need PyTorch and the
Main Brain; the status request and three of SecAgg+'s four stages do not. `LightSite` therefore
loads `aivo.services.site` on the first message that needs it: a simulation's workers and a
SuperNode in Flower's per-message `subprocess` isolation start light. A deployed site normally
runs `serve_site_worker` (`aivo site serve`, `--isolation process`): one long-lived process per
site that loads everything once and answers every message of every round
(`aivo.sites.task_worker`).
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from flwr.supercore.app_utils import start_parent_process_monitor

from aivo.config import Settings, get_settings
from aivo.errors import ConfigError
from aivo.registry import Registry, get_active_main_version, open_registry
from aivo.registry.sites import check_site_name
from aivo.registry.tables import LearnerModel
from aivo.sites.client_app import make_client_app
from aivo.sites.identity import challenge, generate_key_pair, load_private_key, sign
from aivo.sites.task_worker import RuntimeApi, TaskWorker

KIND = "brain"
FAB_ID = "aivo/aivo-federation"  # publisher/name of the Flower App in aivo/flower_app (`flwr run` submits it)
POOL_STATUSES = ("pending", "active", "fallback")


def site_key_path(settings: Settings) -> Path:
    return settings.site_key or settings.home / "site" / "site.key"


@dataclass(frozen=True)
class SiteInit:
    name: str
    home: str
    private_key: str
    public_key: str
    public_key_text: str


def init_site(*, settings: Settings, name: str) -> SiteInit:
    """Make this AIVO_HOME a site: its registry (migrated), a key pair, and `site.env` with
    AIVO_SITE_NAME for `aivo site serve`. Refuses to overwrite an existing key."""
    check_site_name(name)
    key = site_key_path(settings)
    public = key.with_suffix(".pub")
    text = generate_key_pair(key, public)
    open_registry(settings)  # creates and migrates the site's registry
    env = settings.ensure_home() / "site" / "site.env"
    env.write_text(f"AIVO_SITE_NAME={name}\nAIVO_SITE_KEY={key.resolve()}\n")
    return SiteInit(name=name, home=str(settings.home.resolve()), private_key=str(key.resolve()),
                    public_key=str(public.resolve()), public_key_text=text)


def _pool_bound(count: int) -> int:
    """The next power of two >= count: what a site tells the coordinator about its size."""
    return 1 << max(0, int(count - 1).bit_length()) if count > 0 else 1


def status_reply(*, registry: Registry, name: str, key, nonce: str, node_id: int) -> dict:
    """Who this site is (signing the coordinator's nonce), its version, and a bound on its pool."""
    with registry.session(read_only=True) as session:
        active = get_active_main_version(session=session)
        clones = session.scalar(sa.select(sa.func.count()).select_from(LearnerModel)
                                .where(LearnerModel.kind == KIND, LearnerModel.status.in_(POOL_STATUSES)))
    return {"site": name, "version": active.version if active else "",
            "version_sha256": active.artifact_sha256 if active else "", "pool_bound": _pool_bound(int(clones or 0)),
            "signature": sign(key, challenge(nonce=nonce, node_id=node_id, site=name))}


class LightSite:
    """The SiteHandler of a deployed site: answers status itself; loads the training stack
    (`aivo.services.site.SiteService`) on the first message that needs it."""

    def __init__(self, settings: Settings):
        if not settings.site_name:
            raise ConfigError("this AIVO_HOME is not a site: run `aivo site init NAME` (or set AIVO_SITE_NAME)")
        self.settings = settings
        self._key = load_private_key(site_key_path(settings))
        self._registry: Registry | None = None
        self._service = None

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = open_registry(self.settings)
        return self._registry

    def status(self, *, nonce: str, node_id: int) -> dict:
        return status_reply(registry=self.registry, name=self.settings.site_name, key=self._key, nonce=nonce,
                            node_id=node_id)

    def _heavy(self):
        if self._service is None:
            from aivo.services.runtime import apply_threads  # start-up: see the module doc
            from aivo.services.site import SiteService  # start-up: see the module doc

            apply_threads(self.settings)  # AIVO_NUM_THREADS: a site's worker shares its host's cores
            self._service = SiteService(registry=self.registry, settings=self.settings)
        return self._service

    def warm(self) -> None:
        """Load the training stack now (a long-lived worker, before its first round)."""
        self._heavy()

    def install(self, **kwargs):
        return self._heavy().install(**kwargs)

    def contribute(self, **kwargs):
        return self._heavy().contribute(**kwargs)

    def evaluate(self, **kwargs):
        return self._heavy().evaluate(**kwargs)


_sites: dict[str, LightSite] = {}
_sites_lock = threading.Lock()


def site_for(settings: Settings) -> LightSite:
    """One handler per site home and process (a simulation's worker serves many messages)."""
    key = str(settings.home.resolve())
    with _sites_lock:
        site = _sites.get(key)
        if site is None:
            site = _sites[key] = LightSite(settings)
        return site


def _site_env(home: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    env = home / "site" / "site.env"
    if env.exists():
        for line in env.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                key, value = line.split("=", 1)
                values[key.strip()] = value.strip()
    return values


def with_site_identity(settings: Settings) -> Settings:
    """`settings` with AIVO_SITE_NAME / AIVO_SITE_KEY from the home's site/site.env (written by
    `aivo site init`) where the environment does not set them."""
    values = _site_env(settings.home)
    update = {}
    if settings.site_name is None and values.get("AIVO_SITE_NAME"):
        update["site_name"] = values["AIVO_SITE_NAME"]
    if settings.site_key is None and values.get("AIVO_SITE_KEY"):
        update["site_key"] = Path(values["AIVO_SITE_KEY"])
    return settings.model_copy(update=update) if update else settings


def settings_for_site(home: str | Path) -> Settings:
    """The settings of the site whose AIVO_HOME is `home` (its own SQLite registry and artifact
    folder, its name and key from `site/site.env`): how a simulation runs many sites in one
    process tree without one site's settings leaking into another's."""
    home = Path(home)
    values = _site_env(home)
    return Settings(home=home, database_url=None, artifact_url=None, site_name=values.get("AIVO_SITE_NAME"),
                    site_key=values.get("AIVO_SITE_KEY"), num_threads=1)


def site_client_app(site_homes: list[str] | None = None):
    """The site's ClientApp. Deployment (`site_homes` None): the SuperNode's environment says
    which site it is (AIVO_HOME, AIVO_SITE_NAME). Simulation: virtual node `partition-id` i is
    the site in `site_homes[i]`."""
    def handler_for(context) -> LightSite:
        if site_homes is None:
            settings = with_site_identity(get_settings())
        else:
            settings = settings_for_site(site_homes[int(context.node_config["partition-id"])])
        return site_for(settings)

    return make_client_app(handler_for)


def serve_site_worker(*, settings: Settings, runtime_api: str, parent_pid: int | None = None,
                      stop: threading.Event | None = None) -> None:
    """Run this site's ClientApp for its SuperNode (`--isolation process`) until `stop` is set
    (or, with `parent_pid`, until that process, the SuperNode, is gone: SIGINT, as Flower's own
    SuperExec does). The site's registry and training stack load once, before the first message."""
    if parent_pid is not None:
        # Flower's monitor ends this process with SIGINT. A process started from a shell's background
        # job (a CI runner, `nohup ... &`) inherits SIGINT ignored, and the worker then outlived its
        # SuperNode, polling a dead port forever: take Python's own SIGINT handler back first.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        start_parent_process_monitor(parent_pid)
    try:
        site = site_for(with_site_identity(settings))
        site.warm()
        worker = TaskWorker(runtime=RuntimeApi(runtime_api), app=make_client_app(lambda context: site),
                            fab_id=FAB_ID)
        worker.serve(stop)
    except Exception:
        # A SuperNode without its worker would stay connected and answer nothing: take it down too,
        # so that `aivo site serve` ends and its supervisor restarts both.
        if parent_pid is not None:
            os.kill(parent_pid, signal.SIGTERM)
        raise

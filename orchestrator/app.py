"""Composition root: build everything from Settings, run, and shut down in reverse order.

Start: logging -> journal (and instance id) -> metrics -> providers -> runtime (events)
-> reconciler recovery -> HTTP -> scheduler. Stop (SIGTERM/SIGINT): scheduler (no new
runs; the in-flight reconcile may finish within ``shutdown_timeout``) -> drain runners
if ``shutdown_mode=drain`` (else leave them for the next start to adopt) -> HTTP ->
providers -> runtime -> journal. Only this module handles signals.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from orchestrator.config import GitHubForgeConfig, GitLabForgeConfig, Settings
from orchestrator.forges import WAIT_MIN_S, provider_deadline
from orchestrator.httpserver import HttpServer
from orchestrator.logging import configure, register_secret
from orchestrator.metrics import Metrics
from orchestrator.reconciler import Reconciler
from orchestrator.runtime import ContainerRuntime, RuntimeFailure
from orchestrator.scheduler import ReconcileScheduler
from orchestrator.state import Journal
from orchestrator.web import create_app, start_server
from providers.base import GitHubApp, GitHubOptions, GitLabOptions, Provider, RequestObserver
from providers.errors import ProviderError

log = structlog.get_logger("orchestrator.app")

ProviderFactory = Callable[[Settings, str, RequestObserver], Mapping[str, Provider]]
RuntimeFactory = Callable[[Settings, str], ContainerRuntime]


def _secret(value: Any) -> str:
    return "" if value is None else str(value.get_secret_value())


def provider_bounds(settings: Settings) -> dict[str, Any]:
    """The provider options that come from daemon settings shared with the tracker, so
    each concept has one setting and one clamp (not two with different defaults):
    ``FORGE_CALL_TIMEOUT`` is the tracker's deadline and, slightly under it, the
    provider's; ``FORGE_RETRY_AFTER_MAX`` caps every wait either layer accepts."""
    deadline = provider_deadline(settings.forge_call_timeout)
    return {
        "call_deadline_s": deadline,
        "request_timeout_s": min(15.0, deadline),
        "min_retry_wait_s": WAIT_MIN_S,
        "max_retry_wait_s": settings.forge_retry_after_max,
        "max_jobs_per_scope": settings.max_jobs_per_scope,
    }


def _github_app(forge: GitHubForgeConfig) -> GitHubApp | None:
    """The App to act as (its key registered as a secret for the log redaction)."""
    if not forge.uses_app() or forge.app_installation_id is None:
        return None
    key = _secret(forge.app_private_key)
    register_secret(key)
    return GitHubApp(
        app_id=forge.app_id, installation_id=forge.app_installation_id, private_key=key
    )


def build_providers(
    settings: Settings, instance_id: str, observer: RequestObserver
) -> dict[str, Provider]:
    """One provider per configured forge (explicit switch; no plugin discovery)."""
    providers: dict[str, Provider] = {}
    shared = provider_bounds(settings)
    for forge in settings.forges:
        token = _secret(forge.token)
        register_secret(token)
        register_secret(_secret(forge.webhook_secret))
        match forge:
            case GitLabForgeConfig():
                from providers.gitlab import GitLabProvider

                providers[forge.name] = GitLabProvider(
                    GitLabOptions(
                        name=forge.name,
                        url=forge.url,
                        token=token,
                        instance_id=instance_id,
                        projects=tuple(forge.projects),
                        groups=tuple(forge.groups),
                        instance=forge.instance,
                        runner_type=forge.runner_type,
                        runner_group_id=forge.runner_group_id,
                        runner_project_id=forge.runner_project_id,
                        requests_per_minute=forge.requests_per_minute,
                        include_created=forge.include_created,
                        webhook_secret=_secret(forge.webhook_secret),
                        group_refresh_s=forge.group_refresh_s,
                        graphql_poll=settings.gitlab_graphql,
                        **shared,
                    ),
                    observer=observer,
                )
            case GitHubForgeConfig():
                from providers.github import GitHubProvider

                providers[forge.name] = GitHubProvider(
                    GitHubOptions(
                        name=forge.name,
                        token=token,
                        app=_github_app(forge),
                        instance_id=instance_id,
                        api_url=forge.api_url,
                        web_url=forge.web_url,
                        repos=tuple(forge.repos),
                        orgs=tuple(forge.orgs),
                        runner_group_id=forge.runner_group_id,
                        webhook_secret=_secret(forge.webhook_secret),
                        repo_refresh_s=forge.repo_refresh_s,
                        low_rate_limit=forge.low_rate_limit,
                        requests_per_minute=forge.requests_per_minute,
                        poll_interval_s=settings.poll_interval,
                        **shared,
                    ),
                    observer=observer,
                )
    return providers


def build_runtime(settings: Settings, instance_id: str) -> ContainerRuntime:
    """The runtime over the configured hosts (or DOCKER_HOST), per endpoint ``mode``."""
    from orchestrator.config import DockerHostConfig
    from orchestrator.runtime.composite import build_runtime as build

    hosts = settings.docker_hosts or [DockerHostConfig(name="local", url=settings.docker_host)]
    return build(
        instance_id,
        hosts,
        network_name=settings.network_name,
        credential_delivery=settings.credential_delivery,
    )


class Daemon:
    """The running daemon; tests drive it in-process with fakes."""

    def __init__(
        self,
        settings: Settings,
        *,
        providers: ProviderFactory = build_providers,
        runtime: RuntimeFactory = build_runtime,
    ) -> None:
        self.settings = settings
        self.journal = Journal(settings.journal_path)
        self.instance_id = self.journal.instance_id(settings.instance_id)
        self.reconciler: Reconciler | None = None
        self.metrics = Metrics(snapshot=self._snapshot)
        self.journal.on_transition(self.metrics.transition)
        self.providers = providers(settings, self.instance_id, self.metrics.observe_request)
        self.runtime = runtime(settings, self.instance_id)
        self.reconciler = Reconciler(
            settings=settings,
            journal=self.journal,
            providers=self.providers,
            runtime=self.runtime,
            metrics=self.metrics,
            instance_id=self.instance_id,
        )
        self.scheduler = ReconcileScheduler(
            self.reconciler,
            interval_s=settings.poll_interval,
            gc_interval_s=settings.gc_interval,
        )
        self.reconciler.nudge = self.scheduler.nudge
        self._web: HttpServer | None = None
        self.port = 0
        self.stopping = asyncio.Event()

    def _snapshot(self) -> Any:
        from orchestrator.snapshot import Snapshot

        return self.reconciler.snapshot if self.reconciler else Snapshot()

    async def start(self) -> None:
        assert self.reconciler is not None
        await self.runtime.start(self.reconciler.on_container_event)
        await self.reconciler.recover()
        app = create_app(
            settings=self.settings,
            reconciler=self.reconciler,
            metrics_=self.metrics,
            providers=self.providers,
            last_tick=lambda: self.scheduler.last_tick,
        )
        self._web = await start_server(app, self.settings.http_host, self.settings.http_port)
        self.port = self._web.port
        self.scheduler.start()
        log.info(
            "daemon.started",
            instance=self.instance_id,
            http=f"http://{self.settings.http_host}:{self.port}",
            forges=list(self.providers),
            pools=[p.name for p in self.settings.pools],
            poll_interval_s=self.settings.poll_interval,
        )

    async def stop(self) -> None:
        assert self.reconciler is not None
        timeout = self.settings.shutdown_timeout
        log.info("daemon.stopping", mode=self.settings.shutdown_mode)
        await self.scheduler.stop(timeout)
        if self.settings.shutdown_mode == "drain":
            try:
                await asyncio.wait_for(self.reconciler.drain(timeout), timeout + 15)
            except TimeoutError:
                log.warning("shutdown.drain_timeout")
        await self.reconciler.aclose()
        # Expected trouble (a host or forge that does not answer) is logged and the
        # shutdown goes on; anything else is a bug: the shutdown still completes (nothing
        # left open), then the bugs are raised together so tests and the exit code see them.
        bugs: list[Exception] = []
        if not self.journal.active():
            try:
                await self.runtime.release_unused()
            except RuntimeFailure as exc:  # the next start re-creates what is left
                log.warning("shutdown.release_failed", error=str(exc))
            except Exception as exc:
                log.exception("shutdown.release_crashed")
                bugs.append(exc)
        if self._web is not None:
            await asyncio.shield(self._web.stop())
        for provider in self.providers.values():
            try:
                await provider.aclose()
            except ProviderError as exc:
                log.warning("shutdown.provider_close_failed", forge=provider.name, error=str(exc))
            except Exception as exc:
                log.exception("shutdown.provider_close_crashed", forge=provider.name)
                bugs.append(exc)
        await self.runtime.aclose()
        self.journal.close()
        if bugs:
            raise ExceptionGroup("daemon shutdown hit bugs", bugs)
        log.info("daemon.stopped")


async def run(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT. Returns the process exit code."""
    configure(settings.log_level, settings.log_format)
    daemon = Daemon(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, daemon.stopping.set)
        except NotImplementedError:  # pragma: no cover - non-Unix
            signal.signal(sig, lambda *_: daemon.stopping.set())
    try:
        await daemon.start()
    except OSError as exc:  # the environment (port in use, address not here): one line
        log.error("daemon.start_failed", error=str(exc))
        print(f"runner-orchestrator: could not start: {exc}", file=sys.stderr)
        await daemon.stop()
        return 1
    except Exception as exc:
        log.exception("daemon.start_failed")
        print(f"runner-orchestrator: could not start: {exc}", file=sys.stderr)
        await daemon.stop()
        return 1
    print(
        f"runner-orchestrator listening on http://{settings.http_host}:{daemon.port}",
        file=sys.stderr,
        flush=True,
    )
    await daemon.stopping.wait()
    await daemon.stop()
    return 0

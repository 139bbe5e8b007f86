"""The forge webhooks: ``POST /webhooks/{kind}`` and ``/webhooks/{kind}/{forge}``.

The body is read size-capped and handed to the forge's provider (signature or token
check, parse; a bad one is a 4xx); the answer goes out within :data:`WEBHOOK_ANSWER_S`
whatever the provider's enrichment does, and polling finishes what a webhook could not.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from orchestrator.httpinput import BadBody, read_body
from orchestrator.web.base import METRICS, PROVIDERS, RECONCILER, SETTINGS, json_error, log
from providers.base import Provider
from providers.errors import ProviderError, WebhookRejected

#: Answer a webhook within this many seconds, whatever the forge lookup behind it does.
WEBHOOK_ANSWER_S = 5.0


def _provider_for(request: web.Request, kind: str) -> Provider | None:
    name = request.match_info.get("forge")
    for provider in request.app[PROVIDERS].values():
        if provider.kind == kind and (name is None or provider.name == name):
            return provider
    return None


async def webhook(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    if kind not in {"gitlab", "github"}:
        return json_error(404, "unknown webhook kind")
    provider = _provider_for(request, kind)
    metrics_ = request.app[METRICS]
    if provider is None:
        return json_error(404, f"no {kind} forge configured")
    limit = request.app[SETTINGS].max_webhook_bytes
    try:
        body = await read_body(request, limit)
    except BadBody as exc:
        result_label = "too_large" if exc.status == 413 else f"rejected_{exc.status}"
        metrics_.webhooks.labels(provider.name, result_label).inc()
        return json_error(exc.status, exc.message)
    try:
        result = await asyncio.wait_for(
            provider.handle_webhook(dict(request.headers), body), WEBHOOK_ANSWER_S
        )
    except TimeoutError:
        # Forges give up after ~10 s. Enriching the event (e.g. GitLab job tags) took too
        # long: accept it and let a reconcile (which polls) pick the job up.
        metrics_.webhooks.labels(provider.name, "accepted_slow").inc()
        request.app[RECONCILER].nudge()
        return web.json_response({"accepted": True, "note": "processed by polling"}, status=202)
    except RecursionError:
        # The provider parses the (authenticated) body; nesting beyond the parser's
        # recursion limit is malformed input, not a bug in the daemon.
        metrics_.webhooks.labels(provider.name, "rejected_400").inc()
        return json_error(400, "body is not JSON: nested too deeply")
    except WebhookRejected as exc:
        metrics_.webhooks.labels(provider.name, f"rejected_{exc.status}").inc()
        log.info("webhook.rejected", forge=provider.name, status=exc.status, reason=str(exc))
        return json_error(exc.status if 400 <= exc.status < 500 else 400, str(exc))
    except ProviderError as exc:
        # We could not enrich the event (e.g. fetch job tags): polling will catch up.
        metrics_.webhooks.labels(provider.name, "accepted_degraded").inc()
        request.app[RECONCILER].nudge()
        return web.json_response({"accepted": True, "note": str(exc)}, status=202)
    metrics_.webhooks.labels(provider.name, "accepted").inc()
    request.app[RECONCILER].on_webhook(provider.name, result)
    return web.json_response({"accepted": True, "event": result.event}, status=202)

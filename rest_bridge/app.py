"""The FastAPI application: created by ``create_app``, configured in its lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from rest_bridge.callers.keys import authenticate, install_key_redaction
from rest_bridge.callers.limits import RateLimits, redacted_url
from rest_bridge.edge import envelope, openapi
from rest_bridge.edge.access_log import AccessLog, note_route
from rest_bridge.edge.body_limit import BodyLimit
from rest_bridge.edge.metrics import count_points
from rest_bridge.generation.bus import bus_for
from rest_bridge.generation.kinds import KINDS
from rest_bridge.generation.live import LiveGenerations
from rest_bridge.link.channels import CatalogueWatch, InferenceClient, parse_targets
from rest_bridge.link.credentials import LinkSecurity
from rest_bridge.maintenance import Maintenance
from rest_bridge.outbound.webhooks import WebhookSender
from rest_bridge.routes import (
    account,
    docs,
    files,
    generate,
    generations,
    openai_compat,
    projects,
    service,
    unmatched,
)
from rest_bridge.settings import BridgeSettings
from rest_bridge.state import BridgeState
from rest_bridge.web import login_link, studio
from rest_bridge.web import routes as web
from storage.blobs import blob_store_from_url
from storage.db import make_engine, migrate

log = logging.getLogger("rest_bridge")


async def start_ratelimits(cfg: BridgeSettings) -> RateLimits:
    """The counter store; says at start-up whether it is shared or this process's own."""
    install_key_redaction()
    ratelimits = RateLimits.from_settings(cfg)
    if ratelimits.shared:
        assert cfg.redis_url is not None
        if not await ratelimits.check():
            raise RuntimeError(f"REDIS_URL {redacted_url(cfg.redis_url)} cannot be reached")
        log.info("rate limits: shared through Redis at %s", redacted_url(cfg.redis_url))
    else:
        log.warning(
            "rate limits: REDIS_URL is unset, so counters are kept in this process only; "
            "run a single bridge process, or set REDIS_URL to share them between several"
        )
    return ratelimits


def warn_plaintext_link(security: LinkSecurity, targets: str) -> None:
    """Says at start-up when prompts (and the service token) would cross a network in clear."""
    exposed = security.exposed_targets(parse_targets(targets))
    if exposed:
        carries = ", with GENSERVE_INFERENCE_TOKEN," if security.token else ""
        log.warning(
            "the gRPC link to %s is plaintext%s off this machine: set GENSERVE_GRPC_TLS_CA "
            "(and the inference servers' GENSERVE_GRPC_TLS_CERT/KEY) to use TLS",
            ", ".join(exposed),
            carries,
        )


def create_app(settings: BridgeSettings | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cfg = settings or BridgeSettings()
        engine = make_engine(cfg.db_url)
        migrate(engine)
        security = LinkSecurity.from_settings(cfg)
        warn_plaintext_link(security, cfg.inference_targets)
        client = InferenceClient(cfg.inference_targets, security)
        await client.refresh()
        ratelimits = await start_ratelimits(cfg)
        app.state.bridge = BridgeState(
            settings=cfg,
            engine=engine,
            blobs=blob_store_from_url(cfg.blob_url, cfg.blob_dir),
            client=client,
            secret=cfg.secret_bytes(),
            ratelimits=ratelimits,
        )
        state = app.state.bridge
        sender = WebhookSender(state, cfg.fetch_policy())
        bus = bus_for(cfg.redis_url, cfg.ratelimit_prefix)
        app.state.live = LiveGenerations(state, bus=bus, on_finish=sender.job_finished)
        bus.start(app.state.live.cancel_by_id)
        sender.start()
        watch = CatalogueWatch(client, cfg.catalogue_refresh_s)
        watch.start()
        maintenance = Maintenance(state)
        maintenance.start()
        log.info(
            "bridge ready: inference at %s, public URL %s, %s",
            cfg.inference_targets,
            cfg.base_url,
            cfg.exposure(),
        )
        try:
            yield
        finally:
            await app.state.live.close()
            await bus.stop()
            await watch.stop()
            await maintenance.stop()
            await sender.stop()
            await client.close()
            engine.dispose()

    app = FastAPI(
        title="genserve",
        version="0.1.0",
        description="Self-hostable AI generation API.",
        lifespan=lifespan,
        docs_url=None,  # served by routes/docs.py, with assets that need no network
        redoc_url=None,
        dependencies=[Depends(note_route)],  # the route's template, for the access log
    )
    # Innermost middleware: inside the request id, before routing; the generation routes'
    # callers are authenticated before their bodies (up to tens of MB) are read.
    app.add_middleware(
        BodyLimit,
        authenticated_first=[unit.path for unit in KINDS.values()],
        authenticate=authenticate,
    )
    envelope.install(app)
    app.include_router(account.router)
    app.include_router(web.router)
    app.include_router(studio.router)  # /projects and /playground, clients of /api/v1
    app.include_router(login_link.router)  # one-time log-in links (genserve up prints one)
    for router in (
        generate.router,  # one POST route per kind of output (generation/kinds.py)
        generations.router,
        projects.router,
        files.router,
        service.router,
    ):
        app.include_router(router)
    app.include_router(openai_compat.router)  # /v1/: OpenAI's shapes, its own error format
    docs.install(app)
    openapi.install(app)
    app.include_router(unmatched.router)  # last: it answers what no other route serves
    app.add_middleware(AccessLog)  # outermost: request id, access log and request metrics
    count_points()
    return app

"""The FastAPI application: created by ``create_app``, configured in its lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from inference_server.model_config import load_model_table
from rest_bridge import envelope
from rest_bridge.inference_client import InferenceClient
from rest_bridge.routes import files, images, projects, service
from rest_bridge.settings import BridgeSettings
from rest_bridge.state import BridgeState
from storage.blobs import LocalBlobStore
from storage.db import make_engine, migrate

log = logging.getLogger("rest_bridge")


def create_app(settings: BridgeSettings | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cfg = settings or BridgeSettings()
        engine = make_engine(cfg.db_url)
        migrate(engine)
        client = InferenceClient(cfg.inference_targets)
        app.state.bridge = BridgeState(
            settings=cfg,
            engine=engine,
            blobs=LocalBlobStore(cfg.blob_dir),
            client=client,
            models=load_model_table(cfg.models_file),
            secret=cfg.secret_bytes(),
        )
        log.info(
            "bridge ready: inference at %s, public URL %s", cfg.inference_targets, cfg.base_url
        )
        try:
            yield
        finally:
            await client.close()
            engine.dispose()

    app = FastAPI(
        title="genserve",
        version="0.1.0",
        description="Self-hostable AI generation API.",
        lifespan=lifespan,
    )
    envelope.install(app)
    for router in (images.router, projects.router, files.router, service.router):
        app.include_router(router)
    return app

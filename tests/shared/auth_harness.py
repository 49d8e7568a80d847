"""A protected FastAPI app whose validator talks to the fake IdP over real loopback HTTP."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI
from prometheus_client import CollectorRegistry

from shared.audit import AuditRecorded
from shared.auth import JwksCache, Principal, TokenValidator, require_scopes
from shared.http import RequestContextMiddleware, install_error_handlers
from tests.fakes.idp import FakeIdP

NOW = 1_900_000_000  # the validator's wall clock: token times are exact, never racing a second tick


class FakeClock:
    """A monotonic clock the test moves by hand (JWKS TTL and cooldown)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.t += seconds


@dataclass
class MemorySink:
    """AuditSink that keeps records in a list; `fail` makes record() raise."""

    records: list[AuditRecorded] = field(default_factory=list)
    fail: bool = False

    async def record(self, record: AuditRecorded) -> None:
        """Keep the record."""
        if self.fail:
            raise RuntimeError("audit store down")
        self.records.append(record)


def protected_app(validator: TokenValidator | None, sink: MemorySink | None) -> FastAPI:
    """An app with a consent:read route and a consent:revoke route."""
    app = FastAPI(title="consent-test")
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, registry=CollectorRegistry())
    app.state.token_validator = validator
    app.state.audit_sink = sink
    app.state.service_name = "consent"

    @app.get("/v1/consents")
    async def read(p: Annotated[Principal, Depends(require_scopes("consent:read"))]) -> Any:
        return {**asdict(p), "scopes": sorted(p.scopes)}

    @app.post("/v1/consents/{consent_id}:revoke")
    async def revoke(
        consent_id: str, p: Annotated[Principal, Depends(require_scopes("consent:revoke"))]
    ) -> Any:
        return {"revoked": consent_id}

    return app


@dataclass
class Harness:
    """Everything a test drives or inspects."""

    idp: FakeIdP
    client: httpx.AsyncClient
    outbound: list[str]  # every URL the validator's HTTP client requested
    sink: MemorySink
    mono: FakeClock
    app: FastAPI

    async def call(
        self, token: str | None = None, *, path: str = "/v1/consents", **kwargs: Any
    ) -> httpx.Response:
        """GET (or POST for :revoke) the path with `Authorization: Bearer <token>` if given."""
        headers = kwargs.pop("headers", {})
        if token is not None:
            headers = {"Authorization": f"Bearer {token}", **headers}
        method = "POST" if path.endswith(":revoke") else "GET"
        return await self.client.request(method, path, headers=headers, **kwargs)


@contextlib.asynccontextmanager
async def harness(*, ttl_s: float = 300, cooldown_s: float = 30) -> AsyncIterator[Harness]:
    """Start a fake IdP and a protected app; stop both afterwards."""
    idp = FakeIdP().start()
    outbound: list[str] = []

    async def seen(request: httpx.Request) -> None:
        outbound.append(str(request.url))

    try:
        async with httpx.AsyncClient(event_hooks={"request": [seen]}, timeout=5) as http:
            mono = FakeClock()
            jwks = JwksCache(
                url=idp.jwks_url, http=http, ttl_s=ttl_s, cooldown_s=cooldown_s, clock=mono
            )
            validator = TokenValidator(
                jwks, issuer=idp.issuer, audience=idp.audience, leeway_s=30, clock=lambda: NOW
            )
            sink = MemorySink()
            app = protected_app(validator, sink)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://consent") as client:
                yield Harness(idp, client, outbound, sink, mono, app)
    finally:
        idp.stop()

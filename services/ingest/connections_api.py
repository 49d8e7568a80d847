"""Admin API of vendor connections: POST/GET/DELETE /v1/connections (scope `admin`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from services.ingest.adapters.connections_store import NewConnection, SqlConnectionStore
from services.ingest.connections import Connection, Vendor
from services.ingest.errors import ConnectionExistsError, TokenStorageUnavailableError
from shared.auth import Principal, caller_record, require_scopes
from shared.events import PatientId
from shared.http import ApiError, NotFoundError, reject_duplicate_keys, require_json
from shared.kafka import PublishFailedError

log = structlog.get_logger(__name__)
Admin = Annotated[Principal, Depends(require_scopes("admin"))]
PULL_VENDORS = {Vendor.FITBIT, Vendor.GOOGLE_HEALTH}


class VendorTokensIn(BaseModel):
    """The vendor's OAuth2 token pair for the user (pull vendors); stored encrypted."""

    model_config = ConfigDict(extra="forbid")

    access_token: str = Field(min_length=1, max_length=4096)
    refresh_token: str = Field(min_length=1, max_length=4096)
    expires_at: AwareDatetime
    scope: str = Field("", max_length=1024)


class ConnectionIn(BaseModel):
    """Link a vendor account to a pseudonymous patient."""

    model_config = ConfigDict(extra="forbid")

    vendor: Vendor
    vendor_user_id: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9._:@-]+$",
        description="Fitbit ownerId, Google health user id or Garmin userId; omit for Apple.",
    )
    patient_id: PatientId
    tokens: VendorTokensIn | None = None
    utc_offset_minutes: int | None = Field(
        None,
        ge=-720,
        le=840,
        description="Fitbit (required): the user's UTC offset; Fitbit times are local.",
    )

    @model_validator(mode="after")
    def _vendor_fields(self) -> ConnectionIn:
        if self.vendor is Vendor.APPLE_HEALTH:
            if self.vendor_user_id is not None or self.tokens is not None:
                raise ValueError(
                    "apple_health takes neither vendor_user_id nor tokens: a device key is issued"
                )
        elif self.vendor_user_id is None:
            raise ValueError(f"vendor_user_id is required for {self.vendor.value}")
        if self.vendor in PULL_VENDORS and self.tokens is None:
            raise ValueError(f"tokens are required for {self.vendor.value} (data is pulled)")
        if self.vendor is Vendor.FITBIT and self.utc_offset_minutes is None:
            # Fitbit intraday times are local wall-clock: without the offset they would be
            # stamped as UTC, off by hours with no error.
            raise ValueError("utc_offset_minutes is required for fitbit (its times are local)")
        return self


class ConnectionOut(BaseModel):
    """A connection as the API shows it: never tokens, never key material."""

    connection_id: str
    vendor: Vendor
    vendor_user_id: str
    patient_id: str
    status: str
    status_reason: str | None
    has_tokens: bool
    utc_offset_minutes: int | None
    created_at: datetime
    updated_at: datetime


class ConnectionCreated(ConnectionOut):
    """201 body; `device_key` only for Apple, shown once (only its hash is stored)."""

    device_key: str | None = None


class ConnectionListOut(BaseModel):
    connections: list[ConnectionOut]


class ConnectionConflictError(ApiError):
    status = 409
    code = "already_connected"


class TokenKeysMissingError(ApiError):
    status = 503
    code = "token_encryption_not_configured"


def _out(c: Connection) -> dict[str, Any]:
    return {
        "connection_id": c.connection_id,
        "vendor": c.vendor,
        "vendor_user_id": c.vendor_user,
        "patient_id": c.patient_id,
        "status": c.status.value,
        "status_reason": c.status_reason,
        "has_tokens": c.has_tokens,
        "utc_offset_minutes": c.utc_offset_minutes,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
    }


async def _audit(request: Request, caller: Principal, action: str, c: Connection) -> None:
    record = caller_record(
        caller,
        service="ingest",
        action=action,
        at=datetime.now(UTC),
        patient_id=c.patient_id,
        details={"vendor": c.vendor.value, "connection_id": c.connection_id},
    )
    try:
        await request.app.state.audit_sink.record(record)
    except PublishFailedError:
        log.warning("audit_record_failed", action=action)


def _owned(c: Connection | None, caller: Principal) -> Connection:
    if c is None or c.tenant_id != caller.tenant_id:
        raise NotFoundError("connection not found")
    return c


def build_connections_router() -> APIRouter:
    """Routes of the connections admin API."""
    r = APIRouter(prefix="/v1/connections", tags=["connections"])

    @r.post(
        "",
        status_code=201,
        response_model=ConnectionCreated,
        dependencies=[Depends(require_json), Depends(reject_duplicate_keys)],
        summary="Link a vendor account to a patient (admin)",
        responses={409: {"description": "Vendor account already linked"}},
    )
    async def create(body: ConnectionIn, request: Request, caller: Admin) -> ConnectionCreated:
        store: SqlConnectionStore = request.app.state.connections
        owner = request.app.state.consent.tenant_of(body.patient_id)
        if owner is not None and owner != caller.tenant_id:
            raise NotFoundError("patient not found")
        tokens = None
        if body.tokens is not None:
            tokens = body.tokens.model_dump(mode="json")
        new = NewConnection(
            vendor=body.vendor,
            vendor_user=body.vendor_user_id,
            patient_id=body.patient_id,
            tenant_id=caller.tenant_id,
            created_by=caller.sub,
            tokens=tokens,
            utc_offset_minutes=body.utc_offset_minutes,
        )
        try:
            created, key = await store.create(new, now=datetime.now(UTC))
        except ConnectionExistsError as exc:
            raise ConnectionConflictError(str(exc)) from exc
        except TokenStorageUnavailableError as exc:
            raise TokenKeysMissingError(
                "vendor tokens cannot be stored: set INGEST_TOKEN_KEYS"
            ) from exc
        await _audit(request, caller, "connection.created", created)
        log.info(
            "connection_created", vendor=created.vendor.value, connection_id=created.connection_id
        )
        return ConnectionCreated(**_out(created), device_key=key)

    @r.get("", response_model=ConnectionListOut, summary="The tenant's connections (admin)")
    async def list_(
        request: Request,
        caller: Admin,
        patient_id: Annotated[str | None, Query(max_length=64)] = None,
        vendor: Vendor | None = None,
    ) -> ConnectionListOut:
        store: SqlConnectionStore = request.app.state.connections
        found = await store.list(tenant_id=caller.tenant_id, patient_id=patient_id, vendor=vendor)
        return ConnectionListOut(connections=[ConnectionOut(**_out(c)) for c in found])

    @r.get("/{connection_id}", response_model=ConnectionOut, summary="One connection (admin)")
    async def get(connection_id: str, request: Request, caller: Admin) -> ConnectionOut:
        store: SqlConnectionStore = request.app.state.connections
        return ConnectionOut(**_out(_owned(await store.get(connection_id), caller)))

    @r.delete(
        "/{connection_id}",
        status_code=204,
        summary="Unlink; deletes the stored tokens or device key (admin)",
    )
    async def remove(connection_id: str, request: Request, caller: Admin) -> Response:
        store: SqlConnectionStore = request.app.state.connections
        found = _owned(await store.get(connection_id), caller)
        await store.delete(found.connection_id)
        await _audit(request, caller, "connection.deleted", found)
        return Response(status_code=204)

    return r

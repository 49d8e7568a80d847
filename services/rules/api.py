"""Rules HTTP routes: a patient's own thresholds (PUT/GET/DELETE), tenant-scoped and audited."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict

from services.rules.domain import ThresholdError
from services.rules.thresholds import (
    PatientNotFoundError,
    get_thresholds,
    remove_thresholds,
    set_thresholds,
)
from shared.auth import Principal, require_scopes
from shared.http import ApiError, NotFoundError, PatientPath, reject_duplicate_keys, require_json

Writer = Annotated[Principal, Depends(require_scopes("thresholds:write"))]
Reader = Annotated[Principal, Depends(require_scopes("thresholds:read"))]


class ThresholdsIn(BaseModel):
    """Per-metric bands in canonical units, e.g. {"heart_rate": {"red": {...}, "yellow": {...}}}."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    bands: dict[str, Any]


class ThresholdsOut(BaseModel):
    patient_id: str
    version: int
    bands: dict[str, Any]
    updated_at: datetime
    updated_by: str


class InvalidThresholdsError(ApiError):
    status = 422
    code = "invalid_thresholds"


def _deps(request: Request) -> dict[str, Any]:
    state = request.app.state
    return {
        "engine": state.engine,
        "store": state.thresholds_store,
        "audit": state.audit_sink,
        "now": datetime.now(UTC),
    }


def build_router() -> APIRouter:
    """Routes of the thresholds API."""
    r = APIRouter(prefix="/v1/patients/{patient_id}/thresholds", tags=["thresholds"])
    body_checks: list[Any] = [Depends(require_json), Depends(reject_duplicate_keys)]

    @r.put(
        "",
        response_model=ThresholdsOut,
        dependencies=body_checks,
        summary="Set a patient's own bands (thresholds:write); applied by every instance",
    )
    async def put(
        patient_id: PatientPath, body: ThresholdsIn, request: Request, actor: Writer
    ) -> ThresholdsOut:
        try:
            stored = await set_thresholds(patient_id, body.bands, actor=actor, **_deps(request))
        except PatientNotFoundError as exc:
            raise NotFoundError("patient not found") from exc
        except ThresholdError as exc:
            raise InvalidThresholdsError(str(exc)) from exc
        return ThresholdsOut(**stored.__dict__ | {"bands": stored.bands})

    @r.get("", response_model=ThresholdsOut, summary="A patient's own bands (thresholds:read)")
    async def get(patient_id: PatientPath, request: Request, actor: Reader) -> ThresholdsOut:
        try:
            stored = await get_thresholds(patient_id, actor=actor, **_deps(request))
        except PatientNotFoundError as exc:
            raise NotFoundError("patient not found") from exc
        if stored is None:
            raise NotFoundError("no thresholds set for this patient: the rule set applies")
        return ThresholdsOut(**stored.__dict__)

    @r.delete("", status_code=204, summary="Back to the rule set's bands (thresholds:write)")
    async def delete(patient_id: PatientPath, request: Request, actor: Writer) -> Response:
        try:
            found = await remove_thresholds(patient_id, actor=actor, **_deps(request))
        except PatientNotFoundError as exc:
            raise NotFoundError("patient not found") from exc
        if not found:
            raise NotFoundError("no thresholds set for this patient")
        return Response(status_code=204)

    return r

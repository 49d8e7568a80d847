"""Data-subject rights routes on the consent service: export (everything, all services) and erasure."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse

from services.consent.api import ConsentOut, context
from services.consent.dsr import collect_export, erasure_status, request_erasure
from services.consent.errors import PatientNotFoundError
from services.consent.handlers import list_consents
from shared.auth import Principal, require_scopes
from shared.http import NotFoundError, PatientPath

RequestPath = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")]


def build_dsr_router() -> APIRouter:
    """Routes for LGPD Art. 18 requests."""
    r = APIRouter(prefix="/v1/patients/{patient_id}", tags=["data-subject rights"])

    @r.get("/export", summary="Everything held about the patient, across services (patient:export)")
    async def export(
        patient_id: PatientPath,
        request: Request,
        actor: Annotated[Principal, Depends(require_scopes("patient:export"))],
    ) -> dict[str, Any]:
        ctx = context(request, actor)
        try:
            consents = await list_consents(patient_id, ctx)
        except PatientNotFoundError as exc:
            raise NotFoundError("patient not found") from exc
        state = request.app.state
        audit = await state.audit_log.entries(
            tenant_id=actor.tenant_id, patient_id=patient_id, after_seq=0, limit=10_000
        )
        others = await collect_export(
            patient_id,
            sources=state.settings.export_sources_map(),
            authorization=request.headers["authorization"],
            http=state.http,
        )
        return {
            "patient_id": patient_id,
            "generated_at": ctx.now.isoformat(),
            "consent": {
                "consents": [ConsentOut.of(c).model_dump(mode="json") for c in consents],
                "audit_entries": [e.record.model_dump(mode="json") for e in audit],
            },
            **others,
        }

    @r.post(
        "/erasure", status_code=202, summary="Erase the patient's data everywhere (patient:erase)"
    )
    async def erase(
        patient_id: PatientPath,
        request: Request,
        actor: Annotated[Principal, Depends(require_scopes("patient:erase"))],
    ) -> JSONResponse:
        try:
            request_id = await request_erasure(patient_id, context(request, actor))
        except PatientNotFoundError as exc:
            raise NotFoundError("patient not found") from exc
        location = f"/v1/patients/{patient_id}/erasure/{request_id}"
        return JSONResponse(
            {"request_id": request_id, "status_url": location},
            status_code=202,
            headers={"Location": location},
        )

    @r.get("/erasure/{request_id}", summary="Per-service progress of an erasure (patient:erase)")
    async def erasure(
        patient_id: PatientPath,
        request_id: RequestPath,
        request: Request,
        actor: Annotated[Principal, Depends(require_scopes("patient:erase"))],
    ) -> dict[str, Any]:
        found = await erasure_status(patient_id, request_id, context(request, actor))
        if found is None:
            raise NotFoundError("erasure request not found")
        expected = request.app.state.settings.erasure_services_list()
        done = found["completed"]
        return {
            "request_id": request_id,
            "requested_at": found["requested_at"],
            "complete": all(s in done for s in expected),
            "services": {
                s: {
                    "status": "done",
                    "completed_at": done[s]["completed_at"],
                    "detail": done[s]["detail"],
                }
                if s in done
                else {"status": "pending"}
                for s in expected
            },
        }

    return r

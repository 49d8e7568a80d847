"""Ingest HTTP routes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import State

from services.ingest.domain import SubmittedReading
from services.ingest.errors import BrokerUnavailableError, ConsentUnknownError
from services.ingest.handlers import BatchRejectedError, accept_readings, audit_withheld
from services.ingest.vendors import fhir
from services.ingest.vendors.common import PayloadError
from services.ingest.vendors.wire import decode
from services.ingest.webhook_support import (
    ConsentLoadingError,
    InvalidPayloadError,
    ServiceUnavailableError,
    payload_api_error,
)
from shared.auth import Principal, actor_of, require_scopes
from shared.events import PatientId, UtcDatetime
from shared.http import UnsupportedMediaTypeError, error_body, require_json
from shared.vitals import Metric

MAX_READINGS_PER_REQUEST = 1000
log = structlog.get_logger(__name__)


class ReadingIn(BaseModel):
    """One sample in the generic canonical format."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    patient_id: PatientId
    metric: Metric
    value: float = Field(strict=True, description="Numeric value in `unit`; NaN/Infinity refused.")
    unit: str = Field(
        min_length=1, max_length=32, description="UCUM unit (common aliases accepted)."
    )
    measured_at: UtcDatetime = Field(description="ISO 8601 with a UTC offset.")
    source: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    source_id: str | None = Field(None, max_length=128, description="Vendor's own sample id.")


class ReadingsIn(BaseModel):
    """Body of POST /v1/readings."""

    model_config = ConfigDict(extra="forbid")

    readings: list[ReadingIn] = Field(min_length=1, max_length=MAX_READINGS_PER_REQUEST)


_require_readings_write = require_scopes("readings:write")


def parse_readings(raw: bytes) -> ReadingsIn:
    """Parse and validate a POST /v1/readings body; errors are FastAPI's own (400 / 422)."""
    if not raw:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    try:  # one step for a valid body; anything refused is re-parsed below for the same errors
        return ReadingsIn.model_validate_json(raw)
    except ValidationError:
        pass
    try:
        decoded = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        fallback = "nested too deeply" if isinstance(exc, RecursionError) else "not UTF-8 text"
        error = {"error": getattr(exc, "msg", fallback)}
        loc = ("body", getattr(exc, "pos", 0))
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": loc, "msg": "JSON decode error", "ctx": error}]
        ) from None
    try:
        return ReadingsIn.model_validate(decoded, from_attributes=True)  # as FastAPI does
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


async def readings_endpoint(request: Request) -> JSONResponse:
    """POST /v1/readings: 415, 401/403, then 400/422, then normalize, consent and publish.

    Parsed and authorized by hand rather than through FastAPI's body model and Depends: the same
    checks in the same order and the same error bodies, at a fraction of the per-request cost.
    """
    await require_json(request)
    caller = await _require_readings_write(request)
    body = parse_readings(await request.body())
    return await _submit(request, samples_of(body), caller, field_prefix="readings")


def samples_of(body: ReadingsIn) -> list[SubmittedReading]:
    """The submitted samples of a parsed POST /v1/readings body."""
    return [
        SubmittedReading(
            patient_id=r.patient_id,
            metric=r.metric,
            value=r.value,
            unit=r.unit,
            measured_at=r.measured_at,
            source=r.source,
            source_id=r.source_id,
        )
        for r in body.readings
    ]


def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema with its $defs inlined (an OpenAPI requestBody cannot carry them)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return dict(resolve(schema))


READINGS_BODY_DOC = {
    "required": True,
    "content": {"application/json": {"schema": _inline_schema(ReadingsIn)}},
}


class ReadingsAccepted(BaseModel):
    """202 body: the ids the readings got (deterministic, so a retry returns the same ids)."""

    accepted: int
    reading_ids: list[str]
    withheld_no_consent: int = Field(
        description="Readings not passed on: their patient has no active monitoring consent."
    )


def build_router() -> APIRouter:
    """Routes of the ingest API."""
    router = APIRouter(prefix="/v1", tags=["readings"])

    @router.post(
        "/readings",
        status_code=202,
        response_model=ReadingsAccepted,
        summary="Submit readings in the canonical format",
        description="Answers 202 only after the broker acknowledged every reading (acks=all).",
        openapi_extra={"requestBody": READINGS_BODY_DOC},
        responses={
            400: {"description": "Malformed JSON"},
            401: {"description": "Missing or invalid bearer token"},
            403: {"description": "Token lacks the readings:write scope"},
            413: {"description": "Body over INGEST_MAX_BODY_BYTES"},
            415: {"description": "Not application/json"},
            422: {"description": "A field is invalid; `error.details[].field` names it"},
            503: {"description": "Broker unavailable; retry after Retry-After seconds"},
        },
    )
    async def post_readings(request: Request) -> JSONResponse:
        # Served by services.ingest.fastpath in the running app; declared here for OpenAPI.
        return await readings_endpoint(request)

    @router.post(
        "/fhir/Observation",
        status_code=202,
        response_model=ReadingsAccepted,
        summary="Submit a FHIR R4 vital-signs Observation or a Bundle of them (LOINC-coded)",
        description="Patient from `subject.reference` (Patient/<pseudonymous id>); all-or-nothing.",
        responses={
            415: {"description": "Not application/fhir+json or application/json"},
            422: {"description": "Not a vital-signs Observation we carry; the path is named"},
        },
    )
    async def post_fhir(
        request: Request,
        caller: Annotated[Principal, Depends(require_scopes("readings:write"))],
    ) -> JSONResponse:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in ("application/fhir+json", "application/json"):
            raise UnsupportedMediaTypeError(
                f"content-type must be application/fhir+json, got {ctype or 'none'!r}"
            )
        try:
            found = fhir.map_fhir(decode(await request.body()))
        except PayloadError as exc:
            raise payload_api_error(exc) from exc
        if not found:
            raise InvalidPayloadError("the body holds no Observation we carry")
        samples = [
            SubmittedReading(
                patient_id=f.patient_id,
                metric=f.sample.metric,
                value=f.sample.value,
                unit=f.sample.unit,
                measured_at=f.sample.measured_at,
                source="fhir",
                source_id=f.sample.source_id,
            )
            for f in found
        ]
        return await _submit(request, samples, caller, field_prefix="observations")

    return router


async def _submit(
    request: Request, samples: list[SubmittedReading], caller: Principal, *, field_prefix: str
) -> JSONResponse:
    """Normalize, check consent and publish all-or-nothing; map outcomes to HTTP."""
    status, body = await submit(request.app.state, samples, caller, field_prefix=field_prefix)
    return JSONResponse(body, status_code=status)


async def submit(
    state: State, samples: list[SubmittedReading], caller: Principal, *, field_prefix: str
) -> tuple[int, dict[str, Any]]:
    """Normalize, check consent and publish all-or-nothing: the answer's status and JSON body
    (202 or 422). Raises ApiError (503) when consent is still loading or the broker is down."""
    try:
        result = await accept_readings(
            samples,
            received_at=datetime.now(UTC),
            max_future_skew=timedelta(seconds=state.settings.ingest_max_future_skew_s),
            publisher=state.publisher,
            consent=state.consent,
            tenant_id=caller.tenant_id,
        )
    except BatchRejectedError as exc:
        details = [
            {"field": f"{field_prefix}[{r.index}].{r.field}", "message": r.message}
            for r in exc.rejected
        ]
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
        return 422, error_body("invalid_reading", summary, details)
    except ConsentUnknownError as exc:
        raise ConsentLoadingError(
            "readings not accepted: consent state is still loading, retry later",
            headers={"Retry-After": "5"},
        ) from exc
    except BrokerUnavailableError as exc:
        raise ServiceUnavailableError(
            "readings not accepted: the event broker is unavailable, retry later",
            headers={"Retry-After": "5"},
        ) from exc
    state.metrics.accepted.inc(result.published)
    if result.withheld_no_consent:
        state.metrics.withheld.inc(result.withheld_no_consent)
        await audit_withheld(result.withheld, sink=state.audit_sink, actor=actor_of(caller))
    accepted = {  # the ReadingsAccepted shape, without building the model to dump it
        "accepted": len(result.reading_ids),
        "reading_ids": result.reading_ids,
        "withheld_no_consent": result.withheld_no_consent,
    }
    return 202, accepted

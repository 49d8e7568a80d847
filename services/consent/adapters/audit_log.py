"""SQL adapter of the audit trail: append in the caller's transaction, read, checkpoint, verify."""

from __future__ import annotations

import base64
import os
from datetime import datetime
from pathlib import Path

import structlog
from pydantic import ValidationError
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.consent.adapters.store import SqlConsentStore
from services.consent.adapters.tables import audit_checkpoints, audit_entries
from services.consent.audit_chain import (
    AuditSigner,
    ChainedEntry,
    Checkpoint,
    Problem,
    ProblemKind,
    VerificationReport,
    append,
    make_checkpoint,
    verify,
)
from shared.audit import AuditRecorded

log = structlog.get_logger(__name__)


class SqlAuditLog:
    """The consent service's append-only, hash-chained, Ed25519-signed audit table."""

    def __init__(self, *, signer: AuditSigner, store: SqlConsentStore) -> None:
        self._signer = signer
        self._store = store

    async def append(self, conn: AsyncConnection, record: AuditRecorded) -> None:
        """Chain the record after the current head; a repeated event id is ignored (replays)."""
        exists = await conn.execute(
            select(audit_entries.c.seq).where(audit_entries.c.event_id == record.event_id)
        )
        if exists.first() is not None:
            return
        entry = append(await self._head(conn), record, signer=self._signer)
        await conn.execute(
            insert(audit_entries).values(
                seq=entry.seq,
                event_id=record.event_id,
                tenant_id=record.tenant_id,
                patient_id=record.patient_id,
                action=record.action,
                occurred_at=record.occurred_at,
                entry=entry.model_dump_json(),
            )
        )

    async def record(self, record: AuditRecorded) -> None:
        """AuditSink for this service's own refusals and for audit.v1 from the others."""
        async with self._store.transaction() as tx:
            await self.append(tx.conn, record)

    async def _head(self, conn: AsyncConnection) -> ChainedEntry | None:
        row = (
            await conn.execute(
                select(audit_entries.c.entry).order_by(audit_entries.c.seq.desc()).limit(1)
            )
        ).first()
        return None if row is None else ChainedEntry.model_validate_json(row[0])

    async def checkpoint(self, at: datetime) -> Checkpoint:
        """Sign the current head and store the checkpoint; also log it for an outside copy."""
        async with self._store.transaction() as tx:
            cp = make_checkpoint(await self._head(tx.conn), signer=self._signer, at=at)
            await tx.conn.execute(
                insert(audit_checkpoints).values(
                    seq=cp.seq, checkpoint=cp.model_dump_json(), signed_at=at
                )
            )
        log.info(
            "audit_checkpoint_signed",
            seq=cp.seq,
            head_hash=cp.head_hash,
            key_id=cp.key_id,
            signature=cp.signature,
        )
        return cp

    async def entries(
        self,
        *,
        tenant_id: str,
        patient_id: str | None,
        after_seq: int,
        limit: int,
        include_unscoped: bool = False,
    ) -> list[ChainedEntry]:
        """The tenant's entries (optionally about one patient), in order; `include_unscoped` adds
        those no tenant could be attributed to (e.g. unauthenticated refusals)."""
        scope = audit_entries.c.tenant_id == tenant_id
        if include_unscoped:
            scope = scope | audit_entries.c.tenant_id.is_(None)
        query = (
            select(audit_entries.c.entry)
            .where(scope, audit_entries.c.seq > after_seq)
            .order_by(audit_entries.c.seq)
            .limit(limit)
        )
        if patient_id is not None:
            query = query.where(audit_entries.c.patient_id == patient_id)
        async with self._store.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [ChainedEntry.model_validate_json(r[0]) for r in rows]

    async def verify(self) -> VerificationReport:
        """Re-read the whole log and every checkpoint and verify them; unparseable rows are tampering."""
        async with self._store.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(audit_entries.c.seq, audit_entries.c.entry).order_by(audit_entries.c.seq)
                )
            ).all()
            cp_rows = (await conn.execute(select(audit_checkpoints.c.checkpoint))).all()
        entries, problems = [], []
        for seq, raw in rows:
            try:
                entries.append(ChainedEntry.model_validate_json(raw))
            except ValidationError:
                problems.append(
                    Problem(seq=seq, kind=ProblemKind.ALTERED, message="stored entry unreadable")
                )
        checkpoints = []
        for (raw,) in cp_rows:
            try:
                checkpoints.append(Checkpoint.model_validate_json(raw))
            except ValidationError:
                problems.append(
                    Problem(seq=0, kind=ProblemKind.BAD_CHECKPOINT, message="checkpoint unreadable")
                )
        report = verify(entries, checkpoints, verifier=self._signer.verifier())
        if not problems:
            return report
        return report.model_copy(update={"ok": False, "problems": (*problems, *report.problems)})


def signer_from(seed_b64: str | None, key_file: str | None, *, create: bool) -> AuditSigner:
    """Load the Ed25519 signing key from a base64 seed or a file (created in dev setups)."""
    if seed_b64:
        return AuditSigner.from_seed(base64.b64decode(seed_b64))
    if not key_file:
        raise RuntimeError("set AUDIT_SIGNING_KEY (base64 Ed25519 seed) or AUDIT_SIGNING_KEY_FILE")
    path = Path(key_file)
    if not path.exists():
        if not create:
            raise RuntimeError(f"AUDIT_SIGNING_KEY_FILE {path} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(base64.b64encode(os.urandom(32)).decode())
    return AuditSigner.from_seed(base64.b64decode(path.read_text().strip()))

"""Audit chain: every tamper case of T39 is flagged, honest logs verify, encodings are stable."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.consent.audit_chain import (
    GENESIS_HASH,
    AuditSigner,
    AuditVerifier,
    ChainedEntry,
    Checkpoint,
    ProblemKind,
    append,
    canonical_bytes,
    hash_entry,
    make_checkpoint,
    verify,
)
from shared.audit import AuditActor, AuditRecorded

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
KEY = AuditSigner.from_seed(bytes(range(32)))
NEW_KEY = AuditSigner.from_seed(bytes(range(32, 64)))
ROGUE = AuditSigner.from_seed(b"\x07" * 32)

Log = tuple[list[ChainedEntry], list[Checkpoint]]
Found = set[tuple[int, ProblemKind]]
K = ProblemKind


def record(n: int) -> AuditRecorded:
    return AuditRecorded(
        event_id=f"ev-{n}",
        occurred_at=T0 + timedelta(seconds=n),
        service="consent",
        actor=AuditActor(type="user", id="officer-1", client_id="portal", tenant_id="t-1"),
        action="consent.read",
        patient_id="pt-1",
        tenant_id="t-1",
        purpose="monitoring",
        legal_basis="lgpd-art-11-I",
        outcome="success",
        request_id=f"req-{n}",
        details={"n": str(n)},
    )


def chain(records: list[AuditRecorded], signers: list[AuditSigner]) -> list[ChainedEntry]:
    entries: list[ChainedEntry] = []
    for rec, signer in zip(records, signers, strict=True):
        entries.append(append(entries[-1] if entries else None, rec, signer=signer))
    return entries


def honest_log() -> Log:
    """Five entries; checkpoints after entry 2 and after entry 5 (the head)."""
    entries = chain([record(n) for n in range(1, 6)], [KEY] * 5)
    checkpoints = [
        make_checkpoint(entries[1], signer=KEY, at=T0 + timedelta(minutes=1)),
        make_checkpoint(entries[4], signer=KEY, at=T0 + timedelta(minutes=2)),
    ]
    return entries, checkpoints


def found(entries: list[ChainedEntry], checkpoints: list[Checkpoint]) -> Found:
    report = verify(entries, checkpoints, verifier=KEY.verifier())
    assert report.ok is (not report.problems)
    return {(p.seq, p.kind) for p in report.problems}


# --- tampering helpers: each takes and returns a whole log ----------------------------------


def edited(entry: ChainedEntry, **changes: Any) -> ChainedEntry:
    return entry.model_copy(update={"record": entry.record.model_copy(update=changes)})


def without(*seqs: int, drop_checkpoints: tuple[int, ...] = ()) -> Callable[[Log], Log]:
    def tamper(log: Log) -> Log:
        entries, cps = log
        return [e for e in entries if e.seq not in seqs], [
            c for c in cps if c.seq not in drop_checkpoints
        ]

    return tamper


def rehash_without_key(log: Log) -> Log:
    entries, cps = log
    e3 = edited(entries[2], outcome="denied")
    e3 = e3.model_copy(
        update={"entry_hash": hash_entry(seq=3, prev_hash=e3.prev_hash, record=e3.record)}
    )
    return [*entries[:2], e3, *entries[3:]], cps


def resign_from(seq: int, *, upto: int = 3, key_id: str | None = None) -> Callable[[Log], Log]:
    """Edit entry seq and re-chain seq..upto with the rogue key (optionally claiming key_id)."""

    def tamper(log: Log) -> Log:
        entries, cps = log
        rebuilt = entries[: seq - 1]
        for e in entries[seq - 1 : upto]:
            rec = e.record.model_copy(update={"outcome": "denied"}) if e.seq == seq else e.record
            rebuilt.append(append(rebuilt[-1] if rebuilt else None, rec, signer=ROGUE))
        if key_id is not None:
            rebuilt = [
                e.model_copy(update={"key_id": key_id}) if e.seq >= seq else e for e in rebuilt
            ]
        return rebuilt + entries[upto:], cps

    return tamper


def resign_tail_and_forge_checkpoint(log: Log) -> Log:
    entries, cps = resign_from(3, upto=5)(log)
    return entries, [cps[0], make_checkpoint(entries[-1], signer=ROGUE, at=T0 + timedelta(hours=1))]


def truncate_and_forge_checkpoint(log: Log) -> Log:
    entries, cps = log
    forged = make_checkpoint(entries[3], signer=ROGUE, at=T0 + timedelta(minutes=2))
    return entries[:4], [cps[0], forged]


def truncate_and_edit_checkpoint(log: Log) -> Log:
    entries, cps = log
    moved = cps[1].model_copy(update={"seq": 4, "head_hash": entries[3].entry_hash})
    return entries[:4], [cps[0], moved]


def checkpoint_changed(**changes: Any) -> Callable[[Log], Log]:
    def tamper(log: Log) -> Log:
        entries, cps = log
        return entries, [cps[0], cps[1].model_copy(update=changes)]

    return tamper


def checkpoint_resigned_under_trusted_id(log: Log) -> Log:
    entries, cps = log
    forged = make_checkpoint(entries[4], signer=ROGUE, at=cps[1].signed_at)
    return entries, [cps[0], forged.model_copy(update={"key_id": KEY.key_id})]


def on_entries(fn: Callable[[list[ChainedEntry]], list[ChainedEntry]]) -> Callable[[Log], Log]:
    return lambda log: (fn(log[0]), log[1])


def rows(*seqs: int) -> Callable[[Log], Log]:
    """The entries as the store would return them, in this order (repeats allowed)."""
    return on_entries(lambda es: [es[s - 1] for s in seqs])


def swapped(field: str) -> Callable[[Log], Log]:
    """Entries 3 and 4 exchange one field, rows then read back in seq order."""

    def swap(es: list[ChainedEntry]) -> list[ChainedEntry]:
        e3 = es[2].model_copy(update={field: getattr(es[3], field)})
        e4 = es[3].model_copy(update={field: getattr(es[2], field)})
        return sorted([*es[:2], e3, e4, *es[4:]], key=lambda e: e.seq)

    return on_entries(swap)


def entry3_set(field: str, value: Callable[[list[ChainedEntry]], object]) -> Callable[[Log], Log]:
    def change(es: list[ChainedEntry]) -> list[ChainedEntry]:
        return [*es[:2], es[2].model_copy(update={field: value(es)}), *es[3:]]

    return on_entries(change)


def respelled(es: list[ChainedEntry]) -> str:
    """Entry 3's signature bytes in other base64 text: the last char's unused low bits flipped."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    sig = es[2].signature
    return sig[:-1] + alphabet[alphabet.index(sig[-1]) ^ 1]


ALL_ROWS = (1, 2, 3, 4, 5)
TAMPER_CASES: list[tuple[str, Callable[[Log], Log], Found]] = [
    ("untouched", rows(*ALL_ROWS), set()),
    (
        "record edited, hash recomputed without the key",
        rehash_without_key,
        {(3, K.BAD_SIGNATURE), (4, K.BROKEN_LINK)},
    ),
    (
        "prev_hash pointed elsewhere",
        entry3_set("prev_hash", lambda es: es[0].entry_hash),
        {(3, K.BROKEN_LINK), (3, K.ALTERED)},
    ),
    ("signatures swapped", swapped("signature"), {(3, K.BAD_SIGNATURE), (4, K.BAD_SIGNATURE)}),
    ("signature re-spelled", entry3_set("signature", respelled), {(3, K.BAD_SIGNATURE)}),
    (
        "key id set to an untrusted key's",
        entry3_set("key_id", lambda _: ROGUE.key_id),
        {(3, K.UNKNOWN_KEY)},
    ),
    ("middle record deleted", without(3), {(3, K.GAP)}),
    ("first record deleted", without(1), {(1, K.GAP)}),
    ("two middle records deleted", without(3, 4), {(3, K.GAP)}),
    ("tail deleted, checkpoint covers it", without(5), {(5, K.TRUNCATED)}),
    ("three at the tail deleted", without(3, 4, 5), {(5, K.TRUNCATED)}),
    (
        "everything deleted, checkpoints kept",
        without(*ALL_ROWS),
        {(2, K.TRUNCATED), (5, K.TRUNCATED)},
    ),
    ("rows reordered", rows(1, 2, 4, 3, 5), {(3, K.REORDERED)}),
    ("row duplicated", rows(1, 2, 3, 4, 5, 3), {(3, K.DUPLICATE)}),
    ("records swapped between seqs", swapped("record"), {(3, K.ALTERED), (4, K.ALTERED)}),
    (
        "entries renumbered",
        swapped("seq"),
        {
            (3, K.ALTERED),
            (3, K.BROKEN_LINK),
            (4, K.ALTERED),
            (4, K.BROKEN_LINK),
            (5, K.BROKEN_LINK),
        },
    ),
    (
        "one record re-signed with another key",
        resign_from(3),
        {(3, K.UNKNOWN_KEY), (4, K.BROKEN_LINK)},
    ),
    (
        "re-signed under the trusted key id",
        resign_from(3, key_id=KEY.key_id),
        {(3, K.BAD_SIGNATURE), (4, K.BROKEN_LINK)},
    ),
    (
        "tail re-signed with another key",
        resign_from(3, upto=5),
        {(3, K.UNKNOWN_KEY), (4, K.UNKNOWN_KEY), (5, K.UNKNOWN_KEY), (5, K.TRUNCATED)},
    ),
    (
        "tail re-signed and checkpoint forged",
        resign_tail_and_forge_checkpoint,
        {(3, K.UNKNOWN_KEY), (4, K.UNKNOWN_KEY), (5, K.UNKNOWN_KEY), (5, K.BAD_CHECKPOINT)},
    ),
    ("tail deleted, checkpoint forged", truncate_and_forge_checkpoint, {(4, K.BAD_CHECKPOINT)}),
    (
        "tail deleted, checkpoint edited to match",
        truncate_and_edit_checkpoint,
        {(4, K.BAD_CHECKPOINT)},
    ),
    (
        "checkpoint time edited",
        checkpoint_changed(signed_at=T0 + timedelta(days=1)),
        {(5, K.BAD_CHECKPOINT)},
    ),
    (
        "checkpoint signed by another key under the trusted id",
        checkpoint_resigned_under_trusted_id,
        {(5, K.BAD_CHECKPOINT)},
    ),
]


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [pytest.param(t, e, id=name) for name, t, e in TAMPER_CASES],
)
def test_verify_flags_each_tamper_case(tamper: Callable[[Log], Log], expected: Found) -> None:
    assert found(*tamper(honest_log())) == expected


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(without(5, drop_checkpoints=(5,)), id="tail and its checkpoint deleted"),
        pytest.param(without(5, drop_checkpoints=(2, 5)), id="tail deleted, no checkpoints"),
        pytest.param(without(1, 2, 3, 4, 5, drop_checkpoints=(2, 5)), id="log emptied"),
    ],
)
def test_tail_deletion_beyond_the_last_checkpoint_is_undetectable(
    tamper: Callable[[Log], Log],
) -> None:
    # The documented limit: only a checkpoint held outside the operator's reach catches these.
    assert found(*tamper(honest_log())) == set()


EDITS: list[tuple[str, dict[str, Any]]] = [
    ("event_id", {"event_id": "ev-x"}),
    ("occurred_at", {"occurred_at": T0 + timedelta(microseconds=1)}),
    ("service", {"service": "notifier"}),
    ("actor.type", {"actor": record(3).actor.model_copy(update={"type": "service"})}),
    ("actor.id", {"actor": record(3).actor.model_copy(update={"id": "officer-2"})}),
    ("actor.client_id", {"actor": record(3).actor.model_copy(update={"client_id": None})}),
    ("actor.tenant_id", {"actor": record(3).actor.model_copy(update={"tenant_id": "t-2"})}),
    ("actor.jti", {"actor": record(3).actor.model_copy(update={"jti": "j-1"})}),
    ("action", {"action": "consent.revoke"}),
    ("patient_id", {"patient_id": "pt-2"}),
    ("tenant_id", {"tenant_id": None}),
    ("purpose", {"purpose": "sharing"}),
    ("legal_basis", {"legal_basis": "lgpd-art-11-II-e"}),
    ("outcome", {"outcome": "denied"}),
    ("reason", {"reason": "x"}),
    ("request_id", {"request_id": "req-x"}),
    ("details", {"details": {"n": "3", "extra": ""}}),
]


def test_edits_cover_every_record_field() -> None:
    assert {name.split(".")[0] for name, _ in EDITS} == set(AuditRecorded.model_fields)


@pytest.mark.parametrize("changes", [pytest.param(c, id=n) for n, c in EDITS])
@pytest.mark.parametrize("seq", [1, 3, 5])
def test_editing_any_field_of_any_record_is_flagged(seq: int, changes: dict[str, Any]) -> None:
    entries, cps = honest_log()
    entries[seq - 1] = edited(entries[seq - 1], **changes)
    assert found(entries, cps) == {(seq, K.ALTERED)}


@pytest.mark.parametrize(
    ("trusted", "expected"),
    [
        pytest.param([KEY, NEW_KEY], set(), id="both keys known"),
        pytest.param([NEW_KEY, KEY], set(), id="order of keys irrelevant"),
        pytest.param(
            [NEW_KEY],
            {(1, K.UNKNOWN_KEY), (2, K.UNKNOWN_KEY), (3, K.UNKNOWN_KEY), (3, K.BAD_CHECKPOINT)},
            id="old key dropped",
        ),
        pytest.param(
            [KEY],
            {(4, K.UNKNOWN_KEY), (5, K.UNKNOWN_KEY), (5, K.BAD_CHECKPOINT)},
            id="new key unknown",
        ),
    ],
)
def test_key_rotation(trusted: list[AuditSigner], expected: Found) -> None:
    entries = chain([record(n) for n in range(1, 6)], [KEY, KEY, KEY, NEW_KEY, NEW_KEY])
    cps = [
        make_checkpoint(entries[2], signer=KEY, at=T0 + timedelta(minutes=1)),
        make_checkpoint(entries[4], signer=NEW_KEY, at=T0 + timedelta(minutes=2)),
    ]
    verifier = AuditVerifier.from_pems(*(s.public_key_pem() for s in trusted))
    report = verify(entries, cps, verifier=verifier)
    assert {(p.seq, p.kind) for p in report.problems} == expected


def test_report_counts_what_it_checked() -> None:
    report = verify(*honest_log(), verifier=KEY.verifier())
    assert report.model_dump() == {
        "ok": True,
        "entries_checked": 5,
        "checkpoints_checked": 2,
        "last_seq": 5,
        "problems": (),
    }


def test_log_survives_a_json_round_trip_through_storage() -> None:
    entries, cps = honest_log()
    stored = [ChainedEntry.model_validate_json(e.model_dump_json()) for e in entries]
    stored_cps = [Checkpoint.model_validate_json(c.model_dump_json()) for c in cps]
    assert found(stored, stored_cps) == set()


def test_chain_links_from_genesis_and_counts_from_one() -> None:
    entries, _ = honest_log()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.entry_hash for a, b in itertools.pairwise(entries))


def test_same_inputs_give_the_same_entries_and_checkpoints() -> None:
    assert honest_log() == honest_log()  # Ed25519 signatures are deterministic too


def test_hash_depends_on_seq_and_predecessor() -> None:
    rec = record(1)
    base = hash_entry(seq=1, prev_hash=GENESIS_HASH, record=rec)
    assert hash_entry(seq=2, prev_hash=GENESIS_HASH, record=rec) != base
    assert hash_entry(seq=1, prev_hash="1" * 64, record=rec) != base


def test_encoding_and_hash_are_pinned() -> None:
    # Changing either invalidates every stored chain: a new format needs v2 domain tags.
    rec = record(1).model_copy(update={"reason": "pedido do titular — ação"})
    assert (
        canonical_bytes(rec)
        == (
            '{"action":"consent.read","actor":{"client_id":"portal","id":"officer-1",'
            '"tenant_id":"t-1","type":"user"},"details":{"n":"1"},"event_id":"ev-1",'
            '"legal_basis":"lgpd-art-11-I","occurred_at":"2026-11-23T12:00:01.000000Z",'
            '"outcome":"success","patient_id":"pt-1","purpose":"monitoring",'
            '"reason":"pedido do titular — ação","request_id":"req-1","service":"consent",'
            '"tenant_id":"t-1"}'
        ).encode()
    )
    pinned = "578d4e3b6a2d23a1d0e35b6935a75eafe80e19e32a6b014519bfcbaeec23298a"
    assert hash_entry(seq=1, prev_hash=GENESIS_HASH, record=rec) == pinned


def test_canonical_bytes_ignore_dict_insertion_order() -> None:
    a = record(1).model_copy(update={"details": {"a": "1", "b": "2", "c": "3"}})
    b = record(1).model_copy(update={"details": {"c": "3", "a": "1", "b": "2"}})
    fields_reversed = AuditRecorded.model_validate(dict(reversed(a.model_dump().items())))
    assert canonical_bytes(a) == canonical_bytes(b) == canonical_bytes(fields_reversed)


def test_canonical_bytes_use_utc_whatever_the_input_offset() -> None:
    brt = timezone(timedelta(hours=-3))
    local = record(1).model_dump() | {"occurred_at": (T0 + timedelta(seconds=1)).astimezone(brt)}
    assert canonical_bytes(AuditRecorded.model_validate(local)) == canonical_bytes(record(1))


def test_none_fields_are_omitted_so_new_optional_fields_keep_old_hashes() -> None:
    assert b'"reason"' not in canonical_bytes(record(1))
    assert b'"jti"' not in canonical_bytes(record(1))


SEED = bytes(range(32))


def test_signer_from_pem_matches_signer_from_seed() -> None:
    pem = Ed25519PrivateKey.from_private_bytes(SEED).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert AuditSigner.from_pem(pem).key_id == AuditSigner.from_seed(SEED).key_id
    assert AuditSigner.from_pem(pem.decode()).sign(b"m") == AuditSigner.from_seed(SEED).sign(b"m")


def test_key_id_is_a_prefix_of_the_public_key_digest() -> None:
    raw = (
        Ed25519PrivateKey.from_private_bytes(SEED)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    assert KEY.key_id == hashlib.sha256(raw).hexdigest()[:16]
    assert AuditVerifier.from_pems(KEY.public_key_pem()).key_ids == {KEY.key_id}


def test_signer_rejects_bad_key_material() -> None:
    pem, spki = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_pem = ec_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError, match="32 bytes"):
        AuditSigner.from_seed(bytes(31))
    with pytest.raises(TypeError):
        AuditSigner.from_pem(ec_pem)
    with pytest.raises(TypeError):
        AuditVerifier.from_pems(ec_key.public_key().public_bytes(pem, spki))


def test_checkpoint_of_an_empty_log() -> None:
    cp = make_checkpoint(None, signer=KEY, at=T0)
    assert (cp.seq, cp.head_hash) == (0, GENESIS_HASH)
    assert verify([], [cp], verifier=KEY.verifier()).ok
    assert verify(honest_log()[0], [cp], verifier=KEY.verifier()).ok


def test_checkpoint_time_must_be_aware() -> None:
    with pytest.raises(ValueError, match="naive"):
        make_checkpoint(None, signer=KEY, at=datetime(2026, 11, 23, 12, 0))

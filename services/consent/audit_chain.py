"""Append-only audit trail: hash-chained, Ed25519-signed entries and signed checkpoints (pure).

Encoding (``canonical_bytes``): sorted-key compact JSON, UTF-8 (no ``\\u`` escapes), keys in
code-point order. ``None`` fields are omitted, so adding an optional field to ``AuditRecorded``
keeps old hashes valid (a new field must default to None). Datetimes are UTC ISO 8601 with six
fractional digits and ``Z`` (``2026-11-23T12:00:00.000000Z``); floats are refused. We format
values ourselves, not pydantic, so an upgrade cannot change old hashes. Close to RFC 8785, not it.

Chain: ``entry_hash = SHA-256(tag || prev_hash (32 bytes) || seq (u64 big-endian) ||
canonical_bytes(record))``, entry 1 linking to ``GENESIS_HASH``. Entries are signed over
``tag || entry_hash``, checkpoints (size, head hash, time, key id) over ``tag || canonical JSON``;
one tag per use, so no signature can pass for another kind. A checkpoint is a signed tree head
for a linear chain: no Merkle inclusion or consistency proofs, verifying re-reads the prefix.

``verify`` detects an edited field, a deleted, duplicated or misplaced entry, an entry re-signed
with an untrusted key or under another key's id, a forged or edited checkpoint, and a tail
deleted below the newest checkpoint it is given.

Not detectable without checkpoints kept by an external witness or WORM store:
- Deleting the tail after the newest checkpoint, or the tail together with the checkpoints that
  cover it: a log is only known to be at least as long as the newest checkpoint the verifier holds.
- Whoever holds a trusted signing key can rewrite, re-sign and re-checkpoint everything after the
  last checkpoint published beyond their reach (everything, if none was). Keys have no validity
  windows: a leaked retired key forges as well as the current one until the verifier drops it.
- Different logs shown to different auditors (a fork); only witness cosigning catches that.
- An emptied log with no checkpoint: it verifies as ok.
- Truth and completeness: a signature proves what the service recorded, not what happened; an
  action never appended leaves no trace; ``occurred_at`` and ``signed_at`` are the signer's claims,
  not trusted timestamps (RFC 3161). Records are not encrypted: pseudonymous ids only, no PHI.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field

from shared.audit import AuditRecorded
from shared.events import UtcDatetime

GENESIS_HASH = "0" * 64
_ENTRY_HASH_TAG = b"vitals-audit/v1/entry-hash\x00"
_ENTRY_SIG_TAG = b"vitals-audit/v1/entry-sig\x00"
_CHECKPOINT_SIG_TAG = b"vitals-audit/v1/checkpoint-sig\x00"

Hash = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
KeyId = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
Signature = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{86}$", description="base64url, no pad")]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ChainedEntry(_Frozen):
    """One audit record in the chain, with its link, hash and signature."""

    seq: int = Field(ge=1, lt=2**63)
    record: AuditRecorded
    prev_hash: Hash
    entry_hash: Hash
    signature: Signature
    key_id: KeyId


class Checkpoint(_Frozen):
    """A signed statement of the log's size and head hash at a point in time."""

    seq: int = Field(ge=0, lt=2**63, description="Number of entries covered (0 = empty log).")
    head_hash: Hash
    signed_at: UtcDatetime
    key_id: KeyId
    signature: Signature


class ProblemKind(StrEnum):
    """What verification found wrong."""

    ALTERED = "altered"  # content does not hash to the stored entry hash
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    GAP = "gap"  # missing seq: a deleted record
    REORDERED = "reordered"
    DUPLICATE = "duplicate"
    BROKEN_LINK = "broken_link"  # prev_hash is not the previous entry's hash
    TRUNCATED = "truncated"  # a valid checkpoint disagrees with the log
    BAD_CHECKPOINT = "bad_checkpoint"  # checkpoint signature invalid or key unknown


class Problem(_Frozen):
    """One finding, at the seq it concerns (a checkpoint's seq for checkpoint findings)."""

    seq: int
    kind: ProblemKind
    message: str


class VerificationReport(_Frozen):
    """Outcome of verifying a whole log against its checkpoints."""

    ok: bool
    entries_checked: int
    checkpoints_checked: int
    last_seq: int
    problems: tuple[Problem, ...] = ()


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """Return the key id: first 16 hex digits of SHA-256 over the raw public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class AuditSigner:
    """An Ed25519 private key and its key id."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.key_id = key_id_of(private_key.public_key())

    @classmethod
    def from_seed(cls, seed: bytes) -> AuditSigner:
        """Build from a 32-byte RFC 8032 private key seed."""
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_pem(cls, pem: bytes | str, password: bytes | None = None) -> AuditSigner:
        """Build from a PKCS#8 PEM Ed25519 private key."""
        data = pem.encode() if isinstance(pem, str) else pem
        key = serialization.load_pem_private_key(data, password=password)
        if not isinstance(key, Ed25519PrivateKey):
            raise TypeError("the audit signing key must be Ed25519")
        return cls(key)

    def __repr__(self) -> str:
        return f"AuditSigner(key_id={self.key_id!r})"

    def public_key_pem(self) -> str:
        """Return the public key as SubjectPublicKeyInfo PEM, for publishing."""
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        return self._key.public_key().public_bytes(serialization.Encoding.PEM, spki).decode()

    def sign(self, message: bytes) -> str:
        """Sign and return the signature as base64url without padding."""
        return _b64(self._key.sign(message))

    def verifier(self) -> AuditVerifier:
        """Return a verifier that trusts this key only."""
        return AuditVerifier([self._key.public_key()])


class AuditVerifier:
    """The public keys a verifier trusts, by key id (several during a rotation)."""

    def __init__(self, public_keys: Iterable[Ed25519PublicKey]) -> None:
        self._keys: Mapping[str, Ed25519PublicKey] = {key_id_of(k): k for k in public_keys}

    @classmethod
    def from_pems(cls, *pems: bytes | str) -> AuditVerifier:
        """Build from SubjectPublicKeyInfo PEM public keys."""
        keys: list[Ed25519PublicKey] = []
        for pem in pems:
            key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
            if not isinstance(key, Ed25519PublicKey):
                raise TypeError("audit verification keys must be Ed25519")
            keys.append(key)
        return cls(keys)

    @property
    def key_ids(self) -> frozenset[str]:
        """Return the ids of the trusted keys."""
        return frozenset(self._keys)

    def check(self, key_id: str, message: bytes, signature: str) -> ProblemKind | None:
        """Return None when the signature is valid, else why not."""
        key = self._keys.get(key_id)
        if key is None:
            return ProblemKind.UNKNOWN_KEY
        try:
            raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
            if _b64(raw) != signature:  # the decoder skips junk; accept one spelling only
                raise InvalidSignature
            key.verify(raw, message)
        except (InvalidSignature, ValueError):
            return ProblemKind.BAD_SIGNATURE
        return None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _iso_utc(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("naive datetime in an audit record")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _plain(value: object) -> object:
    """Turn a dumped model into JSON types, formatting datetimes ourselves."""
    if isinstance(value, datetime):
        return _iso_utc(value)
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("audit mapping keys must be strings")
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int):  # bool is an int
        return value
    raise TypeError(f"{type(value).__name__} has no canonical audit encoding")


def _canonical_json(value: object) -> bytes:
    text = json.dumps(_plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def canonical_bytes(record: AuditRecorded) -> bytes:
    """Return the record's deterministic encoding (see the module docstring)."""
    return _canonical_json(record.model_dump(mode="python", exclude_none=True))


def hash_entry(*, seq: int, prev_hash: str, record: AuditRecorded) -> str:
    """Return the hex SHA-256 that chains this record at seq after prev_hash."""
    data = _ENTRY_HASH_TAG + bytes.fromhex(prev_hash) + seq.to_bytes(8, "big")
    return hashlib.sha256(data + canonical_bytes(record)).hexdigest()


def _entry_message(entry_hash: str) -> bytes:
    return _ENTRY_SIG_TAG + bytes.fromhex(entry_hash)


def _checkpoint_message(body: Mapping[str, object]) -> bytes:
    return _CHECKPOINT_SIG_TAG + _canonical_json({k: body[k] for k in body if k != "signature"})


def append(
    prev: ChainedEntry | None, record: AuditRecorded, *, signer: AuditSigner
) -> ChainedEntry:
    """Chain and sign the record after prev (None for the first entry)."""
    seq = 1 if prev is None else prev.seq + 1
    prev_hash = GENESIS_HASH if prev is None else prev.entry_hash
    entry_hash = hash_entry(seq=seq, prev_hash=prev_hash, record=record)
    return ChainedEntry(
        seq=seq,
        record=record,
        prev_hash=prev_hash,
        entry_hash=entry_hash,
        signature=signer.sign(_entry_message(entry_hash)),
        key_id=signer.key_id,
    )


def make_checkpoint(head: ChainedEntry | None, *, signer: AuditSigner, at: datetime) -> Checkpoint:
    """Sign the log's size and head hash as of at (head None for an empty log)."""
    body: dict[str, object] = {
        "seq": 0 if head is None else head.seq,
        "head_hash": GENESIS_HASH if head is None else head.entry_hash,
        "signed_at": at,
        "key_id": signer.key_id,
    }
    return Checkpoint.model_validate({**body, "signature": signer.sign(_checkpoint_message(body))})


def _order_problems(entries: Sequence[ChainedEntry]) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[int] = set()
    highest = 0
    for e in entries:
        if e.seq in seen:
            problems.append(Problem(seq=e.seq, kind=ProblemKind.DUPLICATE, message="seq repeated"))
        elif e.seq < highest:
            message = f"seq {e.seq} comes after seq {highest}"
            problems.append(Problem(seq=e.seq, kind=ProblemKind.REORDERED, message=message))
        seen.add(e.seq)
        highest = max(highest, e.seq)
    return problems


def _entry_problems(entry: ChainedEntry, verifier: AuditVerifier) -> list[Problem]:
    problems: list[Problem] = []
    expected = hash_entry(seq=entry.seq, prev_hash=entry.prev_hash, record=entry.record)
    if expected != entry.entry_hash:
        message = "content does not match the entry hash"
        problems.append(Problem(seq=entry.seq, kind=ProblemKind.ALTERED, message=message))
    kind = verifier.check(entry.key_id, _entry_message(entry.entry_hash), entry.signature)
    if kind is not None:
        message = f"entry signature fails ({kind.value}, key {entry.key_id})"
        problems.append(Problem(seq=entry.seq, kind=kind, message=message))
    return problems


def _chain_problems(ordered: Sequence[ChainedEntry], verifier: AuditVerifier) -> list[Problem]:
    problems: list[Problem] = []
    prev_seq, prev_hash = 0, GENESIS_HASH
    for e in ordered:
        if e.seq > prev_seq + 1:
            message = f"seq {prev_seq + 1}..{e.seq - 1} missing (deleted)"
            problems.append(Problem(seq=prev_seq + 1, kind=ProblemKind.GAP, message=message))
        elif e.prev_hash != prev_hash:
            message = f"prev_hash does not match entry {prev_seq}"
            problems.append(Problem(seq=e.seq, kind=ProblemKind.BROKEN_LINK, message=message))
        problems += _entry_problems(e, verifier)
        prev_seq, prev_hash = e.seq, e.entry_hash
    return problems


def _checkpoint_problems(
    cp: Checkpoint, by_seq: Mapping[int, ChainedEntry], last_seq: int, verifier: AuditVerifier
) -> list[Problem]:
    kind = verifier.check(cp.key_id, _checkpoint_message(cp.model_dump()), cp.signature)
    if kind is not None:
        text = f"checkpoint signature fails ({kind.value}, key {cp.key_id})"
        return [Problem(seq=cp.seq, kind=ProblemKind.BAD_CHECKPOINT, message=text)]
    if cp.seq > last_seq:
        text = f"checkpoint of {_iso_utc(cp.signed_at)} covers seq {cp.seq}; log ends at {last_seq}"
        return [Problem(seq=cp.seq, kind=ProblemKind.TRUNCATED, message=text)]
    head = by_seq.get(cp.seq)
    head_hash = GENESIS_HASH if cp.seq == 0 else None if head is None else head.entry_hash
    if head_hash is not None and head_hash != cp.head_hash:  # None: the gap is reported already
        text = f"checkpoint head hash differs from entry {cp.seq}: the log was rewritten"
        return [Problem(seq=cp.seq, kind=ProblemKind.TRUNCATED, message=text)]
    return []


def verify(
    entries: Sequence[ChainedEntry], checkpoints: Sequence[Checkpoint], *, verifier: AuditVerifier
) -> VerificationReport:
    """Check order, links, hashes and signatures of the whole log, and the log against checkpoints."""
    problems = _order_problems(entries)
    by_seq: dict[int, ChainedEntry] = {}
    for e in entries:
        by_seq.setdefault(e.seq, e)  # a duplicate is reported; the first copy is chained
    problems += _chain_problems([by_seq[s] for s in sorted(by_seq)], verifier)
    last_seq = max(by_seq, default=0)
    for cp in checkpoints:
        problems += _checkpoint_problems(cp, by_seq, last_seq, verifier)
    return VerificationReport(
        ok=not problems,
        entries_checked=len(entries),
        checkpoints_checked=len(checkpoints),
        last_seq=last_seq,
        problems=tuple(problems),
    )

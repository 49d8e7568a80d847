"""Vendor pull clients over real loopback HTTP against fakes that speak the vendors' wire formats."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from deploy.embedded_broker import free_port
from services.ingest.adapters.connections_store import NewConnection, SqlConnectionStore
from services.ingest.adapters.fitbit_api import FitbitApiClient, heart_rate_intraday_path
from services.ingest.adapters.garmin_api import GarminApiClient, UntrustedCallbackError
from services.ingest.adapters.google_health_api import GoogleHealthApiClient
from services.ingest.adapters.token_cipher import cipher_from
from services.ingest.adapters.vendor_oauth import (
    Exchange,
    OAuthTokens,
    VendorAuthError,
    VendorGoneError,
    VendorRateLimitedError,
    VendorRequestError,
    VendorUnavailableError,
)
from services.ingest.app import MIGRATIONS
from services.ingest.connections import Vendor
from services.ingest.pulls import token_exchanger, tokens_from, tokens_to
from shared.db import make_engine, migrate
from tests.fakes.fitbit import FakeFitbit
from tests.fakes.google_health import SIGNATURE_HEADER, FakeGoogleHealth, heart_rate_point
from tests.fakes.server import ThreadedServer

USER = "GGNJL9"
DAY = "2024-05-01"
HR_PATH = heart_rate_intraday_path(DAY, detail="1sec")


def tokens_of(answer: dict[str, Any]) -> OAuthTokens:
    """What the connection store would hold after the code grant."""
    expires_at = datetime.now(UTC) + timedelta(seconds=answer["expires_in"])
    return OAuthTokens(answer["access_token"], answer["refresh_token"], expires_at)


class SavedTokens:
    """The exchange_tokens port in memory (the SQL store is tested on PostgreSQL below): records
    each pair stored and whether the fake had seen it used before it was stored."""

    def __init__(self, seen: list[Any]) -> None:
        self.saved: list[tuple[str, OAuthTokens]] = []
        self.used_before_save: list[bool] = []
        self._seen = seen
        self._stored: dict[str, OAuthTokens] = {}
        self._lock = asyncio.Lock()

    async def __call__(self, vendor_user: str, exchange: Exchange) -> OAuthTokens:
        async with self._lock:
            current = self._stored.get(vendor_user)
            tokens = await exchange(current)
            if tokens != current:
                self._stored[vendor_user] = tokens
                self.saved.append((vendor_user, tokens))
                self.used_before_save.append(
                    any(r.bearer == tokens.access_token for r in self._seen)
                )
            return tokens


@pytest.fixture
def fitbit() -> Iterator[FakeFitbit]:
    fake = FakeFitbit().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def google() -> Iterator[FakeGoogleHealth]:
    fake = FakeGoogleHealth().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


def fitbit_client(
    fake: FakeFitbit, http: httpx.AsyncClient, save: SavedTokens, *, secret: str | None = None
) -> FitbitApiClient:
    return FitbitApiClient(
        http=http,
        base_url=fake.base_url,
        token_url=fake.token_url,
        client_id=fake.client_id,
        client_secret=secret or fake.client_secret,
        exchange_tokens=save,
    )


async def test_fitbit_fetch_returns_the_documented_intraday_shape(
    fitbit: FakeFitbit, http: httpx.AsyncClient
) -> None:
    tokens = tokens_of(fitbit.grant(USER))
    fitbit.set_heart_rate(USER, DAY, [("00:00:05", 61), ("00:00:17", 63)], resting=58)
    save = SavedTokens(fitbit.requests)

    body, in_force = await fitbit_client(fitbit, http, save).get_json(
        vendor_user=USER, tokens=tokens, path=HR_PATH
    )

    assert isinstance(body, dict)
    assert body["activities-heart"][0]["value"]["restingHeartRate"] == 58
    assert body["activities-heart-intraday"]["dataset"] == [
        {"time": "00:00:05", "value": 61},
        {"time": "00:00:17", "value": 63},
    ]
    assert body["activities-heart-intraday"]["datasetType"] == "second"
    assert in_force == tokens
    assert save.saved == [] and fitbit.token_requests() == []
    assert fitbit.requests[-1].bearer == tokens.access_token


@pytest.mark.parametrize("expires_in", [-10, 30], ids=["expired", "expires-within-60s"])
async def test_expiring_token_is_refreshed_once_and_saved_before_use(
    fitbit: FakeFitbit, http: httpx.AsyncClient, expires_in: int
) -> None:
    old = tokens_of(fitbit.grant(USER, expires_in=expires_in))
    save = SavedTokens(fitbit.requests)

    _, in_force = await fitbit_client(fitbit, http, save).get_json(
        vendor_user=USER, tokens=old, path=HR_PATH
    )

    (refresh,) = fitbit.token_requests()
    assert refresh.form == {"grant_type": "refresh_token", "refresh_token": old.refresh_token}
    assert save.saved == [(USER, in_force)]
    assert save.used_before_save == [False]
    assert in_force.refresh_token != old.refresh_token
    assert in_force.expires_at > datetime.now(UTC) + timedelta(hours=7)
    assert [r.bearer for r in fitbit.requests if r.path.startswith("/1/")] == [
        in_force.access_token
    ]
    # The new pair was used, so the single-use refresh token is now dead at Fitbit.
    reuse = await http.post(
        fitbit.token_url,
        data={"grant_type": "refresh_token", "refresh_token": old.refresh_token},
        auth=(fitbit.client_id, fitbit.client_secret),
    )
    assert reuse.status_code == 400
    assert reuse.json()["errors"][0]["errorType"] == "invalid_grant"


async def test_a_401_expired_token_refreshes_once_and_retries(
    fitbit: FakeFitbit, http: httpx.AsyncClient
) -> None:
    tokens = tokens_of(fitbit.grant(USER))
    fitbit.expire_access_tokens(USER)  # our clock still thinks the token is valid
    save = SavedTokens(fitbit.requests)

    body, in_force = await fitbit_client(fitbit, http, save).get_json(
        vendor_user=USER, tokens=tokens, path=HR_PATH
    )

    assert isinstance(body, dict) and "activities-heart" in body
    assert [(r.path, r.status) for r in fitbit.requests] == [
        (HR_PATH, 401),
        ("/oauth2/token", 200),
        (HR_PATH, 200),
    ]
    assert save.saved == [(USER, in_force)] and save.used_before_save == [False]


async def test_concurrent_fetches_of_one_user_refresh_once(
    fitbit: FakeFitbit, http: httpx.AsyncClient
) -> None:
    fitbit.refresh_grace = False  # a second refresh with the same token would now be refused
    old = tokens_of(fitbit.grant(USER, expires_in=-10))
    save = SavedTokens(fitbit.requests)
    client = fitbit_client(fitbit, http, save)

    results = await asyncio.gather(
        *(client.get_json(vendor_user=USER, tokens=old, path=HR_PATH) for _ in range(3))
    )

    assert len(fitbit.token_requests()) == 1
    assert len(save.saved) == 1
    assert {tokens for _, tokens in results} == {save.saved[0][1]}


@pytest.fixture
async def two_replicas_stores(
    database: dict[str, Any],
) -> AsyncIterator[tuple[SqlConnectionStore, SqlConnectionStore]]:
    """Two processes' connection stores (own engines, own pools) on one database."""
    engines = [
        make_engine(database["database_url"], schema=database.get("database_schema"))
        for _ in range(2)
    ]
    await migrate(engines[0], MIGRATIONS)
    cipher = cipher_from(Fernet.generate_key().decode(), None)
    try:
        yield SqlConnectionStore(engines[0], cipher), SqlConnectionStore(engines[1], cipher)
    finally:
        for engine in engines:
            await engine.dispose()


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
async def test_two_replicas_refreshing_one_user_at_once_spend_the_refresh_token_once(
    fitbit: FakeFitbit,
    http: httpx.AsyncClient,
    two_replicas_stores: tuple[SqlConnectionStore, SqlConnectionStore],
) -> None:
    fitbit.refresh_grace = False  # reusing a spent refresh token is invalid_grant, no grace
    stale = tokens_of(fitbit.grant(USER, expires_in=-10))
    first, second = two_replicas_stores
    link = NewConnection(
        vendor=Vendor.FITBIT,
        vendor_user=USER,
        patient_id="pt-1",
        tenant_id="tenant-a",
        created_by="admin",
        tokens=tokens_to(stale),
    )
    await first.create(link, now=datetime.now(UTC))
    replicas = [
        FitbitApiClient(
            http=http,
            base_url=fitbit.base_url,
            token_url=fitbit.token_url,
            client_id=fitbit.client_id,
            client_secret=fitbit.client_secret,
            exchange_tokens=token_exchanger(store, Vendor.FITBIT),
        )
        for store in (first, second)
    ]

    # Both replicas read the same expiring pair from the database and pull at the same time.
    results = await asyncio.gather(
        *(r.get_json(vendor_user=USER, tokens=stale, path=HR_PATH) for r in replicas)
    )

    assert [r.status for r in fitbit.token_requests()] == [200]
    [in_force] = {tokens for _, tokens in results}
    assert in_force.refresh_token != stale.refresh_token
    connection = await second.find(Vendor.FITBIT, USER)
    assert connection is not None
    stored = await second.tokens_of(connection)
    assert stored is not None and tokens_from(stored) == in_force
    assert [r.status for r in fitbit.requests if r.path == HR_PATH] == [200, 200]


async def test_refused_refresh_raises_auth_error_and_saves_nothing(
    fitbit: FakeFitbit, http: httpx.AsyncClient
) -> None:
    granted = tokens_of(fitbit.grant(USER, expires_in=-10))
    unknown = OAuthTokens(granted.access_token, "fb-rt-unknown", granted.expires_at)
    save = SavedTokens(fitbit.requests)

    with pytest.raises(VendorAuthError):
        await fitbit_client(fitbit, http, save).get_json(
            vendor_user=USER, tokens=unknown, path=HR_PATH
        )

    assert [r.status for r in fitbit.token_requests()] == [400]
    assert save.saved == []


async def test_wrong_client_secret_is_a_request_error_not_a_user_problem(
    fitbit: FakeFitbit, http: httpx.AsyncClient
) -> None:
    tokens = tokens_of(fitbit.grant(USER, expires_in=-10))

    with pytest.raises(VendorRequestError) as caught:
        await fitbit_client(fitbit, http, SavedTokens([]), secret="wrong").get_json(
            vendor_user=USER, tokens=tokens, path=HR_PATH
        )

    assert (caught.value.status, caught.value.error_type) == (401, "invalid_client")


@pytest.mark.parametrize(
    ("retry_after", "reset", "expected"),
    [(90, 45, 90.0), (None, 1234, 1234.0), (30, 600, 600.0)],
)
async def test_429_raises_rate_limited_with_the_longest_wait(
    fitbit: FakeFitbit,
    http: httpx.AsyncClient,
    retry_after: int | None,
    reset: int,
    expected: float,
) -> None:
    tokens = tokens_of(fitbit.grant(USER))
    fitbit.rate_limit_next, fitbit.retry_after_s, fitbit.rate_limit_reset_s = 1, retry_after, reset

    with pytest.raises(VendorRateLimitedError) as caught:
        await fitbit_client(fitbit, http, SavedTokens([])).get_json(
            vendor_user=USER, tokens=tokens, path=HR_PATH
        )

    assert caught.value.retry_after_s == expected


async def test_410_raises_gone(fitbit: FakeFitbit, http: httpx.AsyncClient) -> None:
    tokens = tokens_of(fitbit.grant(USER))
    fitbit.gone_users.add(USER)

    with pytest.raises(VendorGoneError):
        await fitbit_client(fitbit, http, SavedTokens([])).get_json(
            vendor_user=USER, tokens=tokens, path=HR_PATH
        )


async def test_other_4xx_carries_fitbits_error_type(
    fitbit: FakeFitbit, http: httpx.AsyncClient
) -> None:
    tokens = tokens_of(fitbit.grant(USER))

    with pytest.raises(VendorRequestError) as caught:
        await fitbit_client(fitbit, http, SavedTokens([])).get_json(
            vendor_user=USER, tokens=tokens, path=heart_rate_intraday_path("2024-13-01")
        )

    assert (caught.value.status, caught.value.error_type) == (400, "validation")


async def test_unreachable_vendor_is_unavailable(http: httpx.AsyncClient) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    client = FitbitApiClient(
        http=http,
        base_url=closed,
        token_url=f"{closed}/oauth2/token",
        client_id="x",
        client_secret="y",
        exchange_tokens=SavedTokens([]),
    )
    fresh = OAuthTokens("at", "rt", datetime.now(UTC) + timedelta(hours=1))

    with pytest.raises(VendorUnavailableError):
        await client.get_json(vendor_user=USER, tokens=fresh, path=HR_PATH)


def test_fitbit_signature_matches_the_reference_test_vector() -> None:
    body = (
        b'[{"collectionType":"activities","date":"2024-05-01","ownerId":"GGNJL9","ownerType":"user",'
        b'"subscriptionId":"user-42-activities"},{"collectionType":"body","date":"2024-05-01",'
        b'"ownerId":"GGNJL9","ownerType":"user","subscriptionId":"user-42-body"}]'
    )
    assert (
        FakeFitbit(client_secret="test-client-secret").sign(body) == "byJzj3X2wpYxoy6TdfJI5fmzpx0="
    )


# --- Google Health API ---------------------------------------------------------------------------

HEALTH_USER = "1234567890"


def google_client(
    fake: FakeGoogleHealth, http: httpx.AsyncClient, save: SavedTokens
) -> GoogleHealthApiClient:
    return GoogleHealthApiClient(
        http=http,
        base_url=fake.base_url,
        token_url=fake.token_url,
        client_id=fake.client_id,
        client_secret=fake.client_secret,
        exchange_tokens=save,
    )


async def test_google_lists_points_in_the_window_after_refreshing(
    google: FakeGoogleHealth, http: httpx.AsyncClient
) -> None:
    old = tokens_of(google.grant(HEALTH_USER, expires_in=-10))
    google.add_points(
        HEALTH_USER,
        "heart-rate",
        [
            heart_rate_point(HEALTH_USER, "a", bpm=71, at="2026-05-01T10:01:00Z"),
            heart_rate_point(HEALTH_USER, "b", bpm=140, at="2026-05-01T11:00:00Z"),
        ],
    )
    save = SavedTokens(google.requests)
    window = (
        'heart_rate.sample_time.physical_time >= "2026-05-01T10:00:00Z" AND '
        'heart_rate.sample_time.physical_time < "2026-05-01T10:15:00Z"'
    )

    body, in_force = await google_client(google, http, save).list_data_points(
        vendor_user=HEALTH_USER, tokens=old, data_type="heart-rate", filter_expr=window
    )

    assert isinstance(body, dict)
    assert [p["heartRate"]["beatsPerMinute"] for p in body["dataPoints"]] == ["71"]
    (refresh,) = google.token_requests()
    assert refresh.form["client_id"] == google.client_id  # credentials in the form body
    assert refresh.form["client_secret"] == google.client_secret
    assert save.saved == [(HEALTH_USER, in_force)] and save.used_before_save == [False]
    assert in_force.refresh_token == old.refresh_token  # Google keeps the refresh token


async def test_google_401_refreshes_once_and_revoked_grant_is_an_auth_error(
    google: FakeGoogleHealth, http: httpx.AsyncClient
) -> None:
    tokens = tokens_of(google.grant(HEALTH_USER))
    google.expire_access_tokens(HEALTH_USER)
    client = google_client(google, http, SavedTokens(google.requests))

    _, in_force = await client.list_data_points(
        vendor_user=HEALTH_USER, tokens=tokens, data_type="heart-rate"
    )
    assert [r.status for r in google.requests] == [401, 200, 200]

    google.revoke(HEALTH_USER)
    with pytest.raises(VendorAuthError):
        await client.list_data_points(
            vendor_user=HEALTH_USER, tokens=in_force, data_type="heart-rate"
        )
    assert [r.status for r in google.requests][-2:] == [401, 400]


@pytest.mark.parametrize(("retry_after", "expected"), [(None, 60.0), (17, 17.0)])
async def test_google_429_resource_exhausted_is_rate_limited(
    google: FakeGoogleHealth, http: httpx.AsyncClient, retry_after: int | None, expected: float
) -> None:
    tokens = tokens_of(google.grant(HEALTH_USER))
    google.rate_limit_next, google.retry_after_s = 1, retry_after

    with pytest.raises(VendorRateLimitedError) as caught:
        await google_client(google, http, SavedTokens([])).list_data_points(
            vendor_user=HEALTH_USER, tokens=tokens, data_type="heart-rate"
        )

    assert caught.value.retry_after_s == expected


async def test_google_invalid_argument_carries_the_status(
    google: FakeGoogleHealth, http: httpx.AsyncClient
) -> None:
    tokens = tokens_of(google.grant(HEALTH_USER))

    with pytest.raises(VendorRequestError) as caught:
        await google_client(google, http, SavedTokens([])).list_data_points(
            vendor_user=HEALTH_USER, tokens=tokens, data_type="heart-rate", filter_expr="bogus"
        )

    assert (caught.value.status, caught.value.error_type) == (400, "INVALID_ARGUMENT")


def test_google_webhook_signature_verifies_with_the_public_key() -> None:
    fake = FakeGoogleHealth()
    body = fake.notification(
        HEALTH_USER, "heart-rate", start="2026-05-01T10:00:00Z", end="2026-05-01T10:15:00Z"
    )
    key = serialization.load_pem_public_key(fake.public_key_pem.encode())
    assert isinstance(key, ec.EllipticCurvePublicKey)
    signature = base64.b64decode(fake.webhook_headers(body)[SIGNATURE_HEADER])

    key.verify(signature, body, ec.ECDSA(hashes.SHA256()))  # raises InvalidSignature if wrong
    with pytest.raises(InvalidSignature):
        key.verify(signature, body + b" ", ec.ECDSA(hashes.SHA256()))


# --- Garmin ping/pull ----------------------------------------------------------------------------


class GarminOrigin:
    """A loopback stand-in for apis.garmin.com's pull endpoints; records every path it serves."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.status = 200
        self.headers: dict[str, str] = {}
        app = Starlette(routes=[Route("/{rest:path}", self._serve)])
        self.server = ThreadedServer(app, name="Garmin")
        self.base_url = f"http://127.0.0.1:{self.server.port}"

    async def _serve(self, request: Request) -> Response:
        self.paths.append(request.url.path)
        if request.url.path.endswith("/redirect"):
            return RedirectResponse("http://127.0.0.1:1/elsewhere", status_code=302)
        body: Any = [{"userId": "u-1", "summaryId": "s-1"}] if self.status == 200 else {}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


@pytest.fixture
def garmin_origins() -> Iterator[tuple[GarminOrigin, GarminOrigin]]:
    trusted, other = GarminOrigin(), GarminOrigin()
    trusted.server.start()
    other.server.start()
    try:
        yield trusted, other
    finally:
        trusted.server.stop()
        other.server.stop()


async def test_garmin_fetches_callbacks_on_the_configured_origin_only(
    garmin_origins: tuple[GarminOrigin, GarminOrigin], http: httpx.AsyncClient
) -> None:
    trusted, other = garmin_origins
    client = GarminApiClient(http=http, base_url=trusted.base_url)
    path = "/wellness-api/rest/dailies?uploadStartTimeInSeconds=1&token=abc"

    assert await client.fetch_callback(trusted.base_url + path) == [
        {"userId": "u-1", "summaryId": "s-1"}
    ]

    port = trusted.server.port
    for hostile in (
        other.base_url + path,  # same host, other port
        f"http://localhost:{port}{path}",  # other host name
        f"https://127.0.0.1:{port}{path}",  # other scheme
        f"http://127.0.0.1:{port}@127.0.0.1:{other.server.port}{path}",  # userinfo trick
        "file:///etc/passwd",
        path,  # relative
    ):
        with pytest.raises(UntrustedCallbackError):
            await client.fetch_callback(hostile)
    assert issubclass(UntrustedCallbackError, ValueError)
    assert other.paths == []
    assert trusted.paths == ["/wellness-api/rest/dailies"]


async def test_garmin_classifies_failures_and_does_not_follow_redirects(
    garmin_origins: tuple[GarminOrigin, GarminOrigin], http: httpx.AsyncClient
) -> None:
    trusted, _ = garmin_origins
    client = GarminApiClient(http=http, base_url=trusted.base_url)

    with pytest.raises(VendorRequestError) as caught:
        await client.fetch_callback(f"{trusted.base_url}/wellness-api/rest/redirect")
    assert caught.value.status == 302

    trusted.status, trusted.headers = 429, {"Retry-After": "42"}
    with pytest.raises(VendorRateLimitedError) as limited:
        await client.fetch_callback(f"{trusted.base_url}/wellness-api/rest/dailies")
    assert limited.value.retry_after_s == 42.0

    trusted.status, trusted.headers = 503, {}
    with pytest.raises(VendorUnavailableError):
        await client.fetch_callback(f"{trusted.base_url}/wellness-api/rest/dailies")

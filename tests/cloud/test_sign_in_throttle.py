"""Sign-in throttling: guessing is stopped after a handful of tries, the owner still signs in, and every
failure is in the audit log; through the API and the console's form alike, on SQLite and PostgreSQL."""

import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from cloud import crud
from cloud.core import security
from cloud.crud.signin import DEFAULT_SIGN_IN_POLICY
from cloud.models import AuditEntry, SignInThrottle, utcnow
from tests.cloud.helpers import PASSWORD

API = "/api/v1"
GUESSER = "198.51.100.7"
OWNER = "203.0.113.20"
YEAR = timedelta(days=365)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def password_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The passwords checked against a hash (bcrypt runs), in order."""
    checked: list[str] = []
    real = security.verify_password

    def counting(password: str, password_hash: str) -> bool:
        checked.append(password)
        return real(password, password_hash)

    monkeypatch.setattr(security, "verify_password", counting)
    return checked


@pytest.fixture
def from_address(client: TestClient) -> Iterator[Callable[[str], TestClient]]:
    """A client of the running app whose requests come from the given address."""
    clients: list[TestClient] = []

    def make(address: str) -> TestClient:
        other = TestClient(client.app, client=(address, 40000))
        clients.append(other)
        return other

    yield make
    for other in clients:
        other.close()


def _login(client: TestClient, password: str, username: str = "county"):
    return client.post(f"{API}/auth/login", json={"username": username, "password": password})


def client_for_admin(client: TestClient, username: str) -> TestClient:
    """`client` signed in as `username` (through the throttled login, from the client's address)."""
    token = _login(client, PASSWORD, username).json()["access_token"]
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def _failures(session: Session, username: str) -> list[AuditEntry]:
    session.rollback()
    return list(
        session.exec(
            select(AuditEntry)
            .where(AuditEntry.action == "login_failed", AuditEntry.entity_id == username)
            .order_by(AuditEntry.id)
        ).all()
    )


def test_fifty_wrong_passwords_then_the_right_one_are_stopped_after_five_checks(world, from_address, password_checks):
    guesser = from_address(GUESSER)

    answers = [_login(guesser, f"guess-{n}") for n in range(50)]
    right = _login(guesser, PASSWORD)

    assert [a.status_code for a in answers[:5]] == [401] * 5
    assert {a.status_code for a in answers[5:]} == {429}
    assert right.status_code == 429, "the guesser is not let in even with the right password while locked"
    assert 1 <= int(right.headers["retry-after"]) <= 60
    assert "too many failed sign-ins" in right.json()["detail"]
    assert len(password_checks) == 5, "a locked attempt must not cost a password check"


def test_the_owner_signs_in_while_others_guess_and_an_admin_can_lift_the_lock(
    world, from_address, password_checks, session: Session
):
    owner = from_address(OWNER)
    assert _login(owner, PASSWORD).status_code == 200
    # Guessing from many addresses, one try each: only the per-account budget can stop it.
    budget = DEFAULT_SIGN_IN_POLICY.account.free
    answers = [_login(from_address(f"192.0.2.{n}"), f"guess-{n}").status_code for n in range(1, budget + 11)]
    assert answers[:budget] == [401] * budget
    assert set(answers[budget:]) == {429}

    assert _login(owner, PASSWORD).status_code == 200, "the owner's own address is not locked by others"
    newcomer = from_address("203.0.113.99")
    assert _login(newcomer, PASSWORD).status_code == 429, "an address the account never used waits"
    refused = client_for_admin(owner, "admin1").post(f"{API}/users/county/unlock")
    assert refused.status_code == 403
    lifted = client_for_admin(owner, "county").post(f"{API}/users/county/unlock")
    assert lifted.status_code == 200, lifted.text
    assert lifted.json()["username"] == "county"
    assert _login(newcomer, PASSWORD).status_code == 200
    session.rollback()
    unlock = session.exec(select(AuditEntry).where(AuditEntry.action == "unlock_sign_in")).one()
    assert (unlock.actor, unlock.entity_id, unlock.client_ip) == ("county", "county", OWNER)


def test_every_failed_sign_in_is_in_the_audit_log(world, from_address, session: Session):
    guesser = from_address(GUESSER)
    for n in range(7):
        _login(guesser, f"guess-{n}", "admin1")
    _login(guesser, "whatever", "nobody-here")

    entries = _failures(session, "admin1")
    assert [(e.actor_kind, e.client_ip, e.school_code) for e in entries] == [("anonymous", GUESSER, "s1")] * 7
    assert [e.summary["reason"] for e in entries] == ["password"] * 5 + ["throttled"] * 2
    assert entries[-1].summary["retry_after_s"] > 0
    assert [e.client_ip for e in _failures(session, "nobody-here")] == [GUESSER]
    # A district's county admin reads them in the audit log of the API.
    listed = (
        from_address(OWNER)
        .get(f"{API}/audit-log?entity=user&entity_id=admin1", headers=world.user("county"))
        .json()["items"]
    )
    assert sum(item["action"] == "login_failed" for item in listed) == 7


def test_the_lock_lifts_by_itself_and_grows_with_each_failure(world, session: Session, password_checks):
    start = utcnow()

    def attempt(seconds: float, password: str = "wrong-one"):
        return crud.sign_in(
            session, username="tech", password=password, client_ip=GUESSER, now=start + timedelta(seconds=seconds)
        )

    assert [attempt(n).retry_after_s for n in range(5)] == [0] * 5
    assert attempt(10).retry_after_s == 60 - 6  # locked a minute from the fifth failure, at 4 s
    assert attempt(64).retry_after_s == 0 and len(password_checks) == 6  # the lock has lifted: checked, wrong
    assert attempt(65).retry_after_s == 119  # the sixth failure, at 64 s, locks twice as long
    signed_in = attempt(64 + 120, PASSWORD)
    assert signed_in.user is not None and signed_in.user.username == "tech"
    assert attempt(200).retry_after_s == 0, "a success clears the count of its address"


@pytest.mark.slow
def test_a_run_of_1000_guesses_gets_a_handful_of_checks_and_the_owner_still_signs_in(
    world, session: Session, password_checks
):
    start = utcnow()
    owner = crud.sign_in(session, username="tech", password=PASSWORD, client_ip=OWNER, now=start)
    assert owner.user is not None
    checked_at = []
    for n in range(1000):  # one try a second, from one address
        result = crud.sign_in(
            session, username="tech", password=f"guess-{n}", client_ip=GUESSER, now=start + timedelta(seconds=n)
        )
        if result.checked:
            checked_at.append(n)
    later = start + timedelta(seconds=1000)

    assert checked_at[:5] == [0, 1, 2, 3, 4]
    gaps = [b - a for a, b in zip(checked_at[5:], checked_at[6:], strict=False)]
    assert len(checked_at) <= 10 and all(gap >= 60 for gap in gaps), checked_at
    assert crud.sign_in(session, username="tech", password=PASSWORD, client_ip=OWNER, now=later).user is not None


def test_parallel_guesses_cannot_slip_past_the_count(world, engine, password_checks):
    def guess(n: int) -> bool:
        with Session(engine) as own:
            return crud.sign_in(own, username="auditor", password=f"guess-{n}", client_ip=GUESSER).checked

    with ThreadPoolExecutor(max_workers=8) as pool:
        checked = list(pool.map(guess, range(24)))

    assert sum(checked) == len(password_checks) == DEFAULT_SIGN_IN_POLICY.pair.free


def test_one_address_trying_many_accounts_is_stopped(world, session: Session, password_checks):
    budget = DEFAULT_SIGN_IN_POLICY.address.free
    results = [
        crud.sign_in(session, username=f"user-{n}", password="Summer2026!", client_ip=GUESSER)
        for n in range(budget + 5)
    ]
    assert [r.checked for r in results] == [True] * budget + [False] * 5
    assert crud.sign_in(session, username="county", password=PASSWORD, client_ip=OWNER).user is not None


def _csrf(client: TestClient) -> str:
    page = client.get("/login")
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


@pytest.mark.parametrize(
    ("lang", "message"),
    [("zh-CN", "登录失败次数过多，请 1 分钟后再试"), ("en", "Too many failed sign-ins; try again in 1 min")],
)
def test_the_console_form_is_throttled_with_a_message_in_the_page_language(
    world, from_address, password_checks, lang, message
):
    browser = from_address(GUESSER)
    browser.cookies.set("classops_lang", lang)
    csrf = _csrf(browser)

    def post(password: str):
        return browser.post(
            "/login", data={"csrf": csrf, "username": "admin2", "password": password}, follow_redirects=False
        )

    answers = [post(f"guess-{n}") for n in range(8)]
    right = post(PASSWORD)

    assert [a.status_code for a in answers] == [401] * 5 + [429] * 3
    assert right.status_code == 429 and 1 <= int(right.headers["retry-after"]) <= 60
    assert message in right.text
    assert len(password_checks) == 5
    owner = from_address(OWNER)
    owner.cookies.set("classops_lang", lang)
    owner_csrf = _csrf(owner)
    signed_in = owner.post(
        "/login", data={"csrf": owner_csrf, "username": "admin2", "password": PASSWORD}, follow_redirects=False
    )
    assert signed_in.status_code == 303, "another address signs in: the guesser's lock is theirs alone"


def test_stale_counts_are_pruned_by_the_maintenance_run(world, session: Session):
    old = utcnow() - timedelta(days=2)
    crud.sign_in(session, username="tech", password="wrong-one", client_ip=GUESSER, now=old)
    crud.sign_in(session, username="tech", password="wrong-two", client_ip=OWNER)

    crud.run_maintenance(
        session, actor=crud.Actor(kind="system", name="maintenance"), sample_retention=YEAR, rollup_retention=YEAR
    )

    # The guesser's pair and address are forgotten; the account's count and the owner's address stay.
    left = {(r.scope, r.address) for r in session.exec(select(SignInThrottle)).all()}
    assert left == {("pair", OWNER), ("account", ""), ("address", OWNER)}


def test_a_failure_stamped_by_a_clock_ahead_does_not_lock_below_the_budget(world, session: Session):
    now = utcnow()
    # Another API instance, its clock 30 s ahead, recorded a failure.
    crud.sign_in(session, username="tech", password="wrong-one", client_ip=GUESSER, now=now + timedelta(seconds=30))

    result = crud.sign_in(session, username="tech", password=PASSWORD, client_ip=GUESSER, now=now)

    assert result.user is not None and result.retry_after_s == 0

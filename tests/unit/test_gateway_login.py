"""`gateway login`: code, 2FA through the no-echo prompt, atomic install with modes, refusals."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from telethon.crypto import AuthKey
from telethon.errors import PasswordHashInvalidError, PhoneCodeInvalidError, SessionPasswordNeededError
from telethon.sessions import SQLiteSession
from telethon.tl import types

from tradingsystem.gateway.login import run_login
from tradingsystem.gateway.sessions import SessionStatus, SessionStore
from tradingsystem.gateway.settings import GatewaySettings


class ScriptedLogin:
    """Plays Telegram's side of a login and writes the session file the way Telethon does."""

    def __init__(self, *, code: str = "12345", password: str | None = None, authorized: bool = False) -> None:
        self.code = code
        self.password = password
        self.authorized = authorized
        self.codes_requested: list[str] = []
        self.passwords_tried: list[str] = []
        self.files: list[Path] = []
        self._session: SQLiteSession | None = None

    def factory(self, session_file: Path) -> ScriptedLogin:
        self.files.append(session_file)
        self._session = SQLiteSession(str(session_file))
        self._session.set_dc(2, "149.154.167.51", 443)
        self._session.save()
        return self

    async def connect(self) -> None:
        assert self._session is not None
        self._session.auth_key = AuthKey(os.urandom(256))
        self._session.save()

    async def disconnect(self) -> None:
        if self._session is not None:
            self._session.close()

    async def is_user_authorized(self) -> bool:
        return self.authorized

    async def send_code_request(self, phone: str) -> Any:
        self.codes_requested.append(phone)
        return None

    async def sign_in(self, phone: str | None = None, code: str | None = None, *,
                      password: str | None = None) -> Any:
        if password is not None:
            self.passwords_tried.append(password)
            if password != self.password:
                raise PasswordHashInvalidError(request=None)
            self.authorized = True
            return None
        if code != self.code:
            raise PhoneCodeInvalidError(request=None)
        if self.password is not None:
            raise SessionPasswordNeededError(request=None)
        self.authorized = True
        return None

    async def get_me(self) -> Any:
        return types.User(id=42, first_name="Ana", last_name="Souza", username="ana_trader")


def settings_for(tmp_path: Path, **extra: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "GATEWAY_DATA_DIR": str(tmp_path / "gateway"),
        "TELEGRAM_API_ID": "12345",
        "TELEGRAM_API_HASH": "0123456789abcdef0123456789abcdef",
        "TELEGRAM_PHONE_NUMBER": "",
        "GATEWAY_SECRET_TOKEN": "x" * 32,
    }
    values.update(extra)
    return GatewaySettings(_env_file=None, **values)  # type: ignore[call-arg]


class Console:
    def __init__(self, answers: list[str], secrets: list[str] | None = None) -> None:
        self.answers = list(answers)
        self.secrets = list(secrets or [])
        self.asked: list[str] = []
        self.secret_asked: list[str] = []
        self.said: list[str] = []

    def prompt(self, question: str) -> str:
        self.asked.append(question)
        if not self.answers:
            raise EOFError
        return self.answers.pop(0)

    def secret(self, question: str) -> str:
        self.secret_asked.append(question)
        return self.secrets.pop(0)

    def say(self, line: str) -> None:
        self.said.append(line)


def login(settings: GatewaySettings, telegram: ScriptedLogin, console: Console, **kwargs: Any) -> int:
    return run_login(settings, prompt=console.prompt, secret_prompt=console.secret, say=console.say,
                     client_factory=telegram.factory, **kwargs)


def test_login_with_code_writes_the_session_atomically(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    telegram = ScriptedLogin()
    console = Console(["+5511987654321", "12345"])
    assert login(settings, telegram, console) == 0

    store = SessionStore.from_settings(settings)
    assert telegram.codes_requested == ["+5511987654321"]
    assert telegram.files == [store.temp_path()]  # written beside the session, then renamed
    assert store.inspect() is SessionStatus.READY
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    assert not store.temp_path().exists()
    assert any("Logged in as Ana Souza (@ana_trader)" in line for line in console.said)


def test_two_step_password_goes_through_the_no_echo_prompt(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, TELEGRAM_PHONE_NUMBER="+5511987654321")
    telegram = ScriptedLogin(password="segredo forte")
    console = Console(["12345"], secrets=["errada", "segredo forte"])
    assert login(settings, telegram, console) == 0
    assert telegram.passwords_tried == ["errada", "segredo forte"]
    assert len(console.secret_asked) == 2
    # The phone came from TELEGRAM_PHONE_NUMBER; only the code was asked with echo.
    assert console.asked == ["Login code: "]
    assert SessionStore.from_settings(settings).inspect() is SessionStatus.READY


def test_wrong_codes_then_giving_up_leaves_nothing(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, TELEGRAM_PHONE_NUMBER="+5511987654321")
    telegram = ScriptedLogin()
    console = Console(["1", "2", "3"])
    assert login(settings, telegram, console) == 1
    store = SessionStore.from_settings(settings)
    assert not store.path.exists()
    assert [p.name for p in store.directory.iterdir() if p.name != store.lock_path.name] == []


def test_a_wrong_code_can_be_retyped(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, TELEGRAM_PHONE_NUMBER="+5511987654321")
    console = Console(["99999", "12345"])
    assert login(settings, ScriptedLogin(), console) == 0


def test_cancelled_login_changes_nothing(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    console = Console(["+5511987654321"])  # then end of input at the code prompt
    assert login(settings, ScriptedLogin(), console) == 1
    store = SessionStore.from_settings(settings)
    assert not store.path.exists()
    assert not store.temp_path().exists()
    assert any("cancelled" in line for line in console.said)


def test_missing_api_credentials(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, TELEGRAM_API_ID="", TELEGRAM_API_HASH="")
    console = Console([])
    assert login(settings, ScriptedLogin(), console) == 1
    assert "TELEGRAM_API_ID" in console.said[0]


def test_refused_while_a_gateway_uses_the_session(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    store = SessionStore.from_settings(settings)
    with store.lock():
        console = Console(["+5511987654321", "12345"])
        assert login(settings, ScriptedLogin(), console) == 1
    assert "in use by another process" in console.said[0]
    assert not store.path.exists()


def test_already_logged_in(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    assert login(settings, ScriptedLogin(), Console(["+5511987654321", "12345"])) == 0
    before = SessionStore.from_settings(settings).signature()
    console = Console([])
    assert login(settings, ScriptedLogin(authorized=True), console) == 0
    assert any("Already logged in" in line for line in console.said)
    assert console.asked == []
    again = Console(["+5511987654321", "12345"])
    assert login(settings, ScriptedLogin(authorized=True), again, force=True) == 0
    assert SessionStore.from_settings(settings).signature() != before


@pytest.mark.parametrize("mode", [0o644, 0o666])
def test_loose_session_modes_are_fixed_by_login_too(tmp_path: Path, mode: int) -> None:
    settings = settings_for(tmp_path)
    assert login(settings, ScriptedLogin(), Console(["+5511987654321", "12345"])) == 0
    store = SessionStore.from_settings(settings)
    os.chmod(store.path, mode)
    assert login(settings, ScriptedLogin(authorized=True), Console([])) == 0
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600

"""`tradingsystem gateway login`: the interactive Telegram login that writes the gateway's session file."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from tradingsystem.gateway.sessions import (
    SessionLocked,
    SessionStatus,
    SessionStore,
    auth_key_dead_errors,
)
from tradingsystem.gateway.settings import GatewaySettings

ATTEMPTS = 3


class LoginClient(Protocol):
    """The Telethon calls a login needs (`TelegramClient` has exactly these)."""

    async def connect(self) -> None: ...

    async def disconnect(self) -> None: ...

    async def is_user_authorized(self) -> bool: ...

    async def send_code_request(self, phone: str) -> Any: ...

    async def sign_in(
        self, phone: str | None = None, code: str | None = None, *, password: str | None = None
    ) -> Any: ...

    async def get_me(self) -> Any: ...


LoginClientFactory = Callable[[Path], LoginClient]


def _telethon_factory(settings: GatewaySettings) -> LoginClientFactory:
    def build(session_file: Path) -> LoginClient:
        from telethon import TelegramClient

        assert settings.telegram_api_id is not None and settings.telegram_api_hash is not None
        client: LoginClient = TelegramClient(
            str(session_file), settings.telegram_api_id, settings.telegram_api_hash, receive_updates=False
        )
        return client

    return build


def _describe(me: Any) -> str:
    name = " ".join(part for part in (getattr(me, "first_name", None), getattr(me, "last_name", None)) if part)
    username = getattr(me, "username", None)
    return f"{name or 'account'}" + (f" (@{username})" if username else "")


def run_login(
    settings: GatewaySettings,
    *,
    force: bool = False,
    prompt: Callable[[str], str] = input,
    secret_prompt: Callable[[str], str] = getpass.getpass,
    say: Callable[[str], None] = print,
    client_factory: LoginClientFactory | None = None,
) -> int:
    """Log the user account in (phone, code, 2FA password without echo); 0 on success, 1 otherwise.

    The new session is written to a temporary file in the session directory and renamed over the
    session file only once Telegram accepted the login, so a running gateway never sees half a session
    and adopts the new one by itself.
    """
    if not settings.user_configured:
        say("TELEGRAM_API_ID and TELEGRAM_API_HASH must be set (https://my.telegram.org, API development tools).")
        return 1
    store = SessionStore.from_settings(settings)
    factory = client_factory or _telethon_factory(settings)
    try:
        status = store.prepare()
        lock = store.lock()
    except SessionLocked as exc:
        say(f"Cannot log in: {exc}. Stop the gateway that uses it first, or choose another "
            "TELEGRAM_SESSION_NAME.")
        return 1
    except OSError as exc:
        say(f"Cannot prepare the session directory {store.directory}: {exc.strerror or exc}")
        return 1
    with lock:
        try:
            return asyncio.run(_login(settings, store, status, factory, force, prompt, secret_prompt, say))
        except (KeyboardInterrupt, EOFError):
            say("\nLogin cancelled; nothing was changed.")
            store.discard_temp(store.temp_path())
            return 1


async def _login(
    settings: GatewaySettings,
    store: SessionStore,
    status: SessionStatus,
    factory: LoginClientFactory,
    force: bool,
    prompt: Callable[[str], str],
    secret_prompt: Callable[[str], str],
    say: Callable[[str], None],
) -> int:
    from telethon import errors

    if status is SessionStatus.READY and not force:
        current = factory(store.path)
        try:
            await current.connect()
            if await current.is_user_authorized():
                me = await current.get_me()
                say(f"Already logged in as {_describe(me)}; session {store.path}. Use --force to log in again.")
                return 0
        except auth_key_dead_errors() as exc:
            await current.disconnect()  # closes the SQLite file before it is renamed
            store.set_aside_expired(exc)
        except (OSError, errors.RPCError) as exc:
            say(f"Could not check the current session ({type(exc).__name__}); logging in again.")
        finally:
            await current.disconnect()

    temp = store.temp_path()
    store.discard_temp(temp)
    client = factory(temp)
    installed = False
    try:
        await client.connect()
        phone = (settings.telegram_phone_number or "").strip()
        if not phone:
            phone = prompt("Phone number (international format, e.g. +5511987654321): ").strip()
        await client.send_code_request(phone)
        say("Telegram sent a login code to your Telegram app (or by SMS).")
        for attempt in range(1, ATTEMPTS + 1):
            code = prompt("Login code: ").strip()
            try:
                await client.sign_in(phone=phone, code=code)
                break
            except errors.SessionPasswordNeededError:
                await _password(client, secret_prompt, say)
                break
            except (errors.PhoneCodeInvalidError, errors.PhoneCodeEmptyError):
                say("That code is not valid." + (" Try again." if attempt < ATTEMPTS else ""))
        else:
            say("Login failed: too many wrong codes.")
            return 1
        me = await client.get_me()
        await client.disconnect()
        store.install(temp)
        installed = True
        say(f"Logged in as {_describe(me)}. Session saved to {store.path} (mode 0600).")
        say("A running gateway picks the new session up within a few seconds, without a restart.")
        return 0
    except errors.FloodWaitError as exc:
        say(f"Telegram asks to wait {exc.seconds} s before trying again.")
        return 1
    except _LoginFailed as exc:
        say(str(exc))
        return 1
    except (errors.RPCError, OSError, ValueError) as exc:
        say(f"Login failed: {type(exc).__name__}: {exc}")
        return 1
    finally:
        await client.disconnect()
        if not installed:
            store.discard_temp(temp)


class _LoginFailed(Exception):
    pass


async def _password(client: LoginClient, secret_prompt: Callable[[str], str], say: Callable[[str], None]) -> None:
    from telethon import errors

    for attempt in range(1, ATTEMPTS + 1):
        password = secret_prompt("Two-step verification password: ")
        try:
            await client.sign_in(password=password)
            return
        except errors.PasswordHashInvalidError:
            say("Wrong password." + (" Try again." if attempt < ATTEMPTS else ""))
    raise _LoginFailed("Login failed: too many wrong passwords.")

"""What TP Capital asks of the Telegram Gateway's control surface: history sync, bots, configured channels."""

from __future__ import annotations

from typing import Any

import httpx
import structlog

from tradingsystem.core.timeutil import iso_ms

log = structlog.get_logger(__name__)
SYNC_LIMIT = 500
# Reading 500 messages from each of several channels takes Telegram a while; status calls are quick.
SYNC_TIMEOUT_S = 120.0
STATUS_TIMEOUT_S = 5.0

# What the dashboard shows when the gateway cannot read history, by the gateway's reason.
REFUSAL_MESSAGES = {
    "bot_only": "Apenas um bot está configurado no Telegram Gateway, e bots não podem ler o histórico dos canais. "
                "Configure a conta de usuário (TELEGRAM_API_ID, TELEGRAM_API_HASH) e execute "
                "`tradingsystem gateway login` para sincronizar o histórico.",
    "not_configured": "Nenhuma conta de usuário do Telegram está configurada no Telegram Gateway; nada pode ler o "
                      "histórico dos canais.",
    "user_not_connected": "A conta de usuário do Telegram não está conectada no Telegram Gateway; o histórico "
                          "poderá ser lido quando ela conectar (execute `tradingsystem gateway login` se pedir login).",
    "no_channels": "Nenhum canal monitorado está configurado (TELEGRAM_SOURCE_CHANNEL_IDS ou o cadastro de canais), "
                   "então não há histórico a ler.",
}
BOT_TOKENS_ON_GATEWAY = (
    "Bot tokens are configured on the Telegram Gateway only (TELEGRAM_INGESTION_BOT_TOKEN in the gateway's "
    "environment or .env, then restart it); the API never stores a bot token. GET /telegram/bots lists the bots "
    "the gateway runs."
)


class GatewayUnreachable(Exception):
    """The gateway did not answer (down, wrong GATEWAY_URL, timeout)."""


class GatewayRefused(Exception):
    """The gateway answered the control call with an error of its own (token or address refused, bad answer)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class GatewayLink:
    """An HTTP client for the gateway's `/control/*` routes, authenticated with the shared gateway token."""

    def __init__(self, base_url: str, tokens: list[str], transport: httpx.AsyncBaseTransport | None = None) -> None:
        if not tokens:
            raise ValueError("a gateway token is required")
        self.base_url = base_url.rstrip("/")
        # While a token is rotated the two sides may hold different lists: each token is tried in turn
        # until the gateway accepts one, which is then used first.
        self._tokens = list(tokens)
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=STATUS_TIMEOUT_S, transport=transport)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(self, method: str, path: str, wait_s: float = STATUS_TIMEOUT_S,
                    json: Any = None) -> tuple[int, dict[str, Any]]:
        for attempt, token in enumerate(list(self._tokens)):
            try:
                response = await self._client.request(method, path, json=json, timeout=wait_s,
                                                      headers={"X-Gateway-Token": token})
            except httpx.HTTPError as exc:
                log.warning("Telegram Gateway unreachable", url=self.base_url + path,
                            error=str(exc) or type(exc).__name__)
                raise GatewayUnreachable(str(exc) or type(exc).__name__) from exc
            if response.status_code != 401 or attempt == len(self._tokens) - 1:
                break
        if response.status_code != 401 and token != self._tokens[0]:
            self._tokens.remove(token)
            self._tokens.insert(0, token)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise GatewayRefused(response.status_code, "the answer is not a JSON object")
        if response.status_code in (401, 403):
            log.error("Telegram Gateway refused the control call", status=response.status_code,
                      error=body.get("error"))
            raise GatewayRefused(response.status_code, str(body.get("error", "refused")))
        return response.status_code, body

    async def sync(self) -> tuple[int, dict[str, Any]]:
        return await self._call("POST", "/control/sync", SYNC_TIMEOUT_S, json={"limit": SYNC_LIMIT})

    async def status(self) -> dict[str, Any]:
        code, body = await self._call("GET", "/control/status")
        if code != 200:
            raise GatewayRefused(code, str(body.get("error", "unexpected answer")))
        return body

    async def reload_channels(self) -> dict[str, Any]:
        code, body = await self._call("POST", "/control/reload-channels")
        if code != 200:
            raise GatewayRefused(code, str(body.get("error", "unexpected answer")))
        return body


def unreachable_message(base_url: str) -> str:
    return f"Telegram Gateway não está acessível. Verifique se o serviço está rodando em {base_url} (GATEWAY_URL)."


def sync_answer(code: int, body: dict[str, Any], labels: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """The dashboard's `POST /sync-messages` answer from the gateway's: counts, per-channel labels, a message."""
    if code == 200 and body.get("success") is True and isinstance(body.get("data"), dict):
        data = body["data"]
        channels = [
            {"channelId": c["channelId"], "label": labels.get(c["channelId"]) or c.get("label") or c["channelId"],
             "messagesSynced": c["messagesSynced"], "messagesSaved": c["messagesSaved"],
             **({"error": c["error"]} if c.get("error") else {})}
            for c in data.get("channelsSynced", [])
        ]
        total, saved = int(data.get("totalMessagesSynced", 0)), int(data.get("totalMessagesSaved", 0))
        message = (
            f"{total} mensagem(ns) sincronizada(s) de {len(channels)} canal(is). {saved} enviada(s) para gravação "
            "no banco (as já gravadas são ignoradas)."
            if total else "Todas as mensagens estão sincronizadas"
        )
        return 200, {"success": True, "message": message,
                     "data": {"totalMessagesSynced": total, "totalMessagesSaved": saved, "messagesSynced": total,
                              "channelsSynced": channels, "timestamp": iso_ms()}}
    reason = body.get("reason")
    if code in (409, 503) and isinstance(reason, str) and reason in REFUSAL_MESSAGES:
        return code, {"success": False, "message": REFUSAL_MESSAGES[reason], "reason": reason,
                      "state": str(body.get("state", ""))}
    log.error("Unexpected answer from the Telegram Gateway's sync", status=code)
    return 502, {"success": False, "message": f"O Telegram Gateway respondeu {code} à sincronização.",
                 "reason": "gateway_error", "state": ""}

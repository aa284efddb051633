"""Sign-in to the admin web console without passwords: an admin asks a chat (or the
command line) for a link, which opens one session and then is spent.

A link is valid for LINK_LIFETIME and once; a session ends after SESSION_IDLE without a
request. The database keeps only sha256 hashes of link tokens and session ids. Whether
the session's admin is still an admin is asked of the config at every request
(`AdminAuthorization`), so removing them from the config locks them out at once.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.core.authorization import AdminAuthorization
from bot.core.types import Identity
from storage.web import WebSessions

__all__ = ["LINK_LIFETIME", "SESSION_IDLE", "SignIn", "SignedIn"]

LINK_LIFETIME = timedelta(minutes=5)
SESSION_IDLE = timedelta(hours=12)
_SIGNIN_PATH = "/signin/"


@dataclass(frozen=True, slots=True)
class SignedIn:
    """An admin's session, as a request sees it."""

    admin: Identity
    csrf: str  # the token every state-changing form of this session carries


class SignIn:
    def __init__(
        self, sessions: WebSessions, authorization: AdminAuthorization, base_url: str
    ) -> None:
        self.sessions = sessions
        self.authorization = authorization
        self.base_url = base_url.rstrip("/")

    async def link(self, actor: Identity) -> str:
        """A one-time sign-in link for `actor`, who must be an admin (audited)."""
        name = await self.authorization.authorize(actor, "web")
        token = secrets.token_urlsafe(32)
        now = _now()
        await self.sessions.add_link(_hash(token), name, _iso(now), _iso(now + LINK_LIFETIME))
        await self.authorization.repo.audit(name, "admin.web.link", {})
        return f"{self.base_url}{_SIGNIN_PATH}{token}"

    async def redeem(self, token: str) -> tuple[str, SignedIn] | None:
        """A new session (its id for the cookie, and what it is) for an unused, unexpired
        link of a current admin; None otherwise."""
        now = _now()
        await self.sessions.forget_before(_iso(now), _iso(now - SESSION_IDLE))
        admin = await self.sessions.use_link(_hash(token), _iso(now))
        if admin is None or not self.authorization.is_admin(_identity(admin)):
            return None
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        await self.sessions.open(_hash(session_id), admin, csrf, _iso(now))
        await self.authorization.repo.audit(admin, "admin.web.signin", {})
        return session_id, SignedIn(_identity(admin), csrf)

    async def session(self, session_id: str) -> SignedIn | None:
        """The session `session_id` opened, if it is live and its admin still one."""
        now = _now()
        found = await self.sessions.get(_hash(session_id))
        if found is None:
            return None
        if datetime.fromisoformat(found.last_seen) < now - SESSION_IDLE:
            await self.sessions.close(_hash(session_id))
            return None
        who = _identity(found.admin)
        if not self.authorization.is_admin(who):
            await self.sessions.close_all(found.admin)
            return None
        await self.sessions.touch(_hash(session_id), _iso(now))
        return SignedIn(who, found.csrf)

    async def sign_out(self, session_id: str) -> None:
        await self.sessions.close(_hash(session_id))


def _identity(name: str) -> Identity:
    platform, _, user_id = name.partition(":")
    return Identity(platform, user_id)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")

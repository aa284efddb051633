"""The admin web console's pages, added to an aiohttp application (`add_console_routes`).

Every page but the sign-in link asks `SignIn.session` for the session its cookie names,
which asks the config whether its admin is still one. Every state-changing form carries
the session's CSRF token; every action goes through `AdminConsole`, which authorizes it
again and writes it to the audit log under the admin's name. Pictures kept for review
are served only to a session, at a URL signed with that session's secret, never cached.

Responses carry a strict Content-Security-Policy (scripts and styles from /static only,
no inline script), `X-Frame-Options: DENY`, no referrer (a sign-in link is a secret in a
URL) and `Cache-Control: no-store`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web
from markupsafe import Markup

from bot.core import Booth
from bot.core.admin import describe_review_item
from bot.core.moderation import parse_duration
from bot.core.signin import SignedIn
from bot.core.summaries import lora_likeness
from bot.core.types import BoothError, NotAuthorized
from bot.web.figures import charts, window
from engine.safety import BLOCKLIST_GROUPS
from storage.records import JobRecord, ReviewItem

__all__ = ["COOKIE", "add_console_routes"]

COOKIE = "selfiebooth_session"
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_AUDIT_PAGE = 50
_STATIC = {"console.css": "text/css", "console.js": "text/javascript"}
_BOOTH = web.AppKey("console_booth", Booth)
_TEMPLATES = web.AppKey("console_templates", jinja2.Environment)

Page = Callable[[web.Request, SignedIn], Awaitable[web.StreamResponse]]


def add_console_routes(app: web.Application, booth: Booth) -> None:
    """The console's routes on `app`, for `booth` (whose config has web.listen set)."""
    if booth.signin is None:
        raise ValueError("the booth has no sign-in: set web.listen")
    app[_BOOTH] = booth
    app[_TEMPLATES] = jinja2.Environment(
        loader=jinja2.PackageLoader("bot.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    app.router.add_get("/", _signed_in(_home))
    app.router.add_get("/signin/{token}", _signin)
    app.router.add_post("/signout", _signed_in(_signout, form=True))
    app.router.add_get("/review", _signed_in(_review))
    app.router.add_post("/review/{item:\\d+}", _signed_in(_decide, form=True))
    app.router.add_get("/review/{item:\\d+}/picture/{signature}", _signed_in(_picture))
    app.router.add_get("/queue", _signed_in(_queue))
    app.router.add_post("/queue", _signed_in(_pause_or_resume, form=True))
    app.router.add_get("/audit", _signed_in(_audit))
    app.router.add_get("/figures", _signed_in(_figures))
    app.router.add_get("/blocklist", _signed_in(_blocklist))
    app.router.add_post("/blocklist", _signed_in(_blocklist_change, form=True))
    app.router.add_get("/styles", _signed_in(_styles))
    app.router.add_post("/styles", _signed_in(_styles_change, form=True))
    app.router.add_get("/users", _signed_in(_users))
    app.router.add_get("/users/{user:\\d+}", _signed_in(_user))
    app.router.add_post("/users/{user:\\d+}", _signed_in(_user_action, form=True))
    app.router.add_get(
        "/users/{user:\\d+}/photos/{photo:\\d+}/{signature}", _signed_in(_user_photo)
    )
    app.router.add_get("/static/{name}", _static)
    app.on_response_prepare.append(_secure)


async def _secure(request: web.Request, response: web.StreamResponse) -> None:
    if request.app.get(_BOOTH) is not None and not request.path.startswith(
        ("/metrics", "/healthz")
    ):
        response.headers.update(_HEADERS)
        if request.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-cache"


def _signed_in(
    page: Page, *, form: bool = False
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """`page` for a live session only; with `form`, only with the session's CSRF token."""

    async def handler(request: web.Request) -> web.StreamResponse:
        booth = request.app[_BOOTH]
        assert booth.signin is not None
        cookie = request.cookies.get(COOKIE, "")
        session = await booth.signin.session(cookie) if cookie else None
        if session is None:
            return _render(
                request,
                "signed_out.html",
                {"reason": "Sign in with a link from the chat: /admin web."},
                status=401,
            )
        if form:
            data = await request.post()
            token = str(data.get("csrf", ""))
            if not hmac.compare_digest(token.encode(), session.csrf.encode()):
                return _render(
                    request,
                    "signed_out.html",
                    {"reason": "This form has expired: go back, reload the page and try again."},
                    status=403,
                )
        return await page(request, session)

    return handler


async def _signin(request: web.Request) -> web.StreamResponse:
    booth = request.app[_BOOTH]
    assert booth.signin is not None
    opened = await booth.signin.redeem(request.match_info["token"])
    if opened is None:
        return _render(
            request,
            "signed_out.html",
            {
                "reason": "This sign-in link is used, expired or not an admin's. "
                "Ask for a new one with /admin web."
            },
            status=403,
        )
    session_id, _ = opened
    response = web.Response(status=303, headers={"Location": "/review"})
    response.set_cookie(
        COOKIE,
        session_id,
        httponly=True,
        samesite="Strict",
        secure=booth.config.web.base_url().startswith("https://"),
        path="/",
    )
    return response


async def _signout(request: web.Request, session: SignedIn) -> web.StreamResponse:
    booth = request.app[_BOOTH]
    assert booth.signin is not None
    await booth.signin.sign_out(request.cookies.get(COOKIE, ""))
    response = _render(request, "signed_out.html", {"reason": "You are signed out."})
    response.del_cookie(COOKIE, path="/")
    return response


async def _home(request: web.Request, session: SignedIn) -> web.StreamResponse:
    raise web.HTTPSeeOther("/review")


async def _review(request: web.Request, session: SignedIn) -> web.StreamResponse:
    booth = request.app[_BOOTH]
    items = await booth.admin.review_queue(session.admin, limit=50)
    shown = []
    for item in items:
        detail = json.loads(item.detail)
        picture = await _picture_blob(booth, item)
        shown.append(
            {
                "id": item.id,
                "kind": item.kind,
                "user": item.user_id,
                "created": item.created_at[:16].replace("T", " "),
                "what": describe_review_item(item),
                "prompt": detail.get("prompt", ""),
                "category": detail.get("category") or detail.get("reason") or "",
                "layer": detail.get("field") or detail.get("source") or "",
                "picture": (
                    f"/review/{item.id}/picture/{_sign(session, item.id)}" if picture else ""
                ),
            }
        )
    said = request.query.get("said", "")
    values = {"items": shown, "said": said, "session": session, "page": "review"}
    return _render(request, "review.html", values)


async def _decide(request: web.Request, session: SignedIn) -> web.StreamResponse:
    booth = request.app[_BOOTH]
    data = await request.post()
    item = int(request.match_info["item"])
    try:
        said = await booth.admin.decide(
            session.admin, item, str(data.get("decision", "")), str(data.get("reason", ""))
        )
    except NotAuthorized:
        raise web.HTTPForbidden() from None
    except BoothError as exc:
        said = str(exc)
    raise web.HTTPSeeOther(f"/review?{urlencode({'said': said})}")


async def _queue(request: web.Request, session: SignedIn) -> web.StreamResponse:
    booth = request.app[_BOOTH]
    view = await booth.admin.queue_view(session.admin)
    now = datetime.now(UTC)

    def row(job: JobRecord, position: int | None) -> dict[str, Any]:
        since = job.started_at if job.status == "running" and job.started_at else job.created_at
        return {
            "id": job.id,
            "kind": job.kind,
            "user": job.user_id,
            "position": position,
            "lane": "training" if job.kind == "train" else "pictures",
            "age": _age(now - datetime.fromisoformat(since)),
            "progress": f"{job.progress:.0%}",
            "attempts": job.attempts,
        }

    values = {
        "session": session,
        "page": "queue",
        "paused": view.paused,
        "running": [row(job, None) for job in view.running],
        "queued": [row(job, n) for n, job in enumerate(view.queued, 1)],
        "said": request.query.get("said", ""),
    }
    return _render(request, "queue.html", values)


async def _pause_or_resume(request: web.Request, session: SignedIn) -> web.StreamResponse:
    booth = request.app[_BOOTH]
    data = await request.post()
    reason = str(data.get("reason", ""))
    if data.get("action") == "pause":
        said = await booth.admin.pause(session.admin, reason)
    else:
        said = await booth.admin.resume(session.admin, reason)
    raise web.HTTPSeeOther(f"/queue?{urlencode({'said': said})}")


async def _audit(request: web.Request, session: SignedIn) -> web.StreamResponse:
    booth = request.app[_BOOTH]
    query = request.query
    before = int(query["before"]) if query.get("before", "").isdigit() else None
    user_text = query.get("user", "").strip().removeprefix("#")
    user = int(user_text) if user_text.isdigit() else None
    by, action = query.get("by", "").strip(), query.get("action", "").strip()
    entries = await booth.admin.audit_log(
        session.admin, _AUDIT_PAGE + 1, before=before, by=by, action=action, user=user
    )
    more = len(entries) > _AUDIT_PAGE
    entries = entries[:_AUDIT_PAGE]
    older = ""
    if more and entries:
        older = "/audit?" + urlencode(
            {"before": entries[-1].id, "by": by, "action": action, "user": user_text}
        )
    values = {
        "session": session,
        "page": "audit",
        "entries": [
            {
                "id": e.id,
                "at": e.at[:19].replace("T", " "),
                "actor": e.actor,
                "action": e.action,
                "detail": e.detail,
            }
            for e in entries
        ],
        "by": by,
        "action": action,
        "user": user_text,
        "older": older,
    }
    return _render(request, "audit.html", values)


async def _blocklist(request: web.Request, session: SignedIn) -> web.StreamResponse:
    booth = request.app[_BOOTH]
    terms = await booth.admin.blocklist(session.admin)
    values = {
        "session": session,
        "page": "blocklist",
        "said": request.query.get("said", ""),
        "groups": BLOCKLIST_GROUPS,
        "terms": [  # by category and term already
            {"category": category, "term": term, "removed": removed}
            for term, category, removed in terms
        ],
    }
    return _render(request, "blocklist.html", values)


async def _blocklist_change(request: web.Request, session: SignedIn) -> web.StreamResponse:
    booth = request.app[_BOOTH]
    data = await request.post()
    category, term = str(data.get("category", "")), str(data.get("term", ""))
    try:
        if data.get("action") == "remove":
            said = await booth.admin.blocklist_remove(session.admin, category, term)
        else:
            said = await booth.admin.blocklist_add(session.admin, category, term)
    except BoothError as exc:
        said = str(exc)
    raise web.HTTPSeeOther(f"/blocklist?{urlencode({'said': said})}")


async def _styles(request: web.Request, session: SignedIn) -> web.StreamResponse:
    booth = request.app[_BOOTH]
    styles = await booth.admin.style_records(session.admin)
    values = {
        "session": session,
        "page": "styles",
        "said": request.query.get("said", ""),
        "styles": [
            {
                "name": style.name,
                "weight": f"{style.weight:g}",
                "trigger": style.trigger,
                "family": style.family,
                "added": f"{style.added_at[:10]} by {style.added_by}",
                "sha256": style.sha256[:12],
            }
            for style in styles
        ],
    }
    return _render(request, "styles.html", values)


async def _styles_change(request: web.Request, session: SignedIn) -> web.StreamResponse:
    booth = request.app[_BOOTH]
    data = await request.post()
    name = str(data.get("name", "")).strip()
    try:
        if data.get("action") == "remove":
            said = await booth.admin.style_remove(session.admin, name)
        else:
            upload = data.get("file")
            if not isinstance(upload, web.FileField):
                raise BoothError("Choose the style's LoRA file (.safetensors) to add.")
            weight = str(data.get("weight", "")).strip()
            said = await booth.admin.style_add(
                session.admin,
                name,
                upload.file.read(),
                filename=upload.filename,
                weight=float(weight) if weight else None,
                trigger=str(data.get("trigger", "")),
            )
    except (BoothError, ValueError) as exc:  # ValueError: a weight that is no number
        said = str(exc)
    raise web.HTTPSeeOther(f"/styles?{urlencode({'said': said})}")


async def _figures(request: web.Request, session: SignedIn) -> web.StreamResponse:
    booth = request.app[_BOOTH]
    chosen, start = window(request.query.get("window", "day"))
    rows = await booth.admin.figures(session.admin, start.isoformat(timespec="milliseconds"))
    values = {
        "session": session,
        "page": "figures",
        "window": chosen.name,
        # The charts escape every text they draw (bot.web.charts).
        "charts": [
            (title, Markup(svg))  # noqa: S704
            for title, svg in charts(rows, chosen, start).items()
        ],
    }
    return _render(request, "figures.html", values)


async def _users(request: web.Request, session: SignedIn) -> web.StreamResponse:
    booth = request.app[_BOOTH]
    query = request.query.get("q", "").strip()
    said = request.query.get("said", "")
    if query:
        try:
            found = await booth.admin.user(query)
        except BoothError as exc:
            said = str(exc)
        else:
            raise web.HTTPSeeOther(f"/users/{found.id}")
    values = {"session": session, "page": "users", "q": query, "said": said}
    return _render(request, "users.html", values)


async def _user(request: web.Request, session: SignedIn) -> web.StreamResponse:
    booth = request.app[_BOOTH]
    user_id = int(request.match_info["user"])
    try:
        profile = await booth.admin.profile(session.admin, f"#{user_id}")
    except BoothError:
        raise web.HTTPNotFound() from None  # never was, or erased
    show = request.query.get("photos") == "shown"
    user = profile.user
    values = {
        "session": session,
        "page": "users",
        "said": request.query.get("said", ""),
        "user": {
            "id": user.id,
            "account": f"{user.platform}:{user.platform_user_id}",
            "since": user.created_at[:10],
            "banned_until": (user.banned_until or "")[:16].replace("T", " "),
            "ban_reason": user.ban_reason or "",
            "images_per_day": profile.images_per_day,
            "trainings_per_week": profile.trainings_per_week,
            "strikes": profile.strikes,
        },
        "consent": (
            {"version": profile.consent.version, "at": profile.consent.accepted_at[:10]}
            if profile.consent
            else None
        ),
        "photos": [
            {
                "id": photo.id,
                "verdict": photo.verdict,
                "at": photo.created_at[:10],
                "url": (
                    f"/users/{user.id}/photos/{photo.id}/{_sign(session, f'photo:{photo.id}')}"
                    if show
                    else ""
                ),
            }
            for photo in profile.photos
        ],
        "show_photos": show,
        # No trigger words: a model's trigger would let another prompt use the face.
        "models": [
            {
                "version": lora.version,
                "method": lora.method.replace("_", " "),
                "family": lora.family,
                "at": lora.created_at[:10],
                "active": bool(lora.active),
                "likeness": lora_likeness(lora) if lora.likeness else "",
            }
            for lora in profile.loras
        ],
        "jobs": [
            {
                "id": job.id,
                "kind": job.kind,
                "status": job.status,
                "at": job.created_at[:16].replace("T", " "),
            }
            for job in profile.jobs[-20:][::-1]
        ],
    }
    return _render(request, "user.html", values)


async def _user_action(request: web.Request, session: SignedIn) -> web.StreamResponse:
    booth = request.app[_BOOTH]
    user_id = int(request.match_info["user"])
    ref = f"#{user_id}"
    data = await request.post()
    action, reason = str(data.get("action", "")), str(data.get("reason", "")).strip()
    admin = booth.admin
    try:
        if action == "ban":
            duration = str(data.get("duration", "")).strip()
            said = await admin.ban(
                session.admin, ref, reason, parse_duration(duration) if duration else None
            )
        elif action == "unban":
            said = await admin.unban(session.admin, ref, reason)
        elif action == "quota":
            images, trainings = str(data.get("images", "")), str(data.get("trainings", ""))
            said = await admin.quota(
                session.admin,
                ref,
                int(images) if images.isdigit() else None,
                int(trainings) if trainings.isdigit() else None,
            )
        elif action == "purge":
            if str(data.get("confirm", "")).strip() != f"purge {ref}":
                said = f"Nothing was erased: type purge {ref} to confirm."
            else:
                said = await admin.purge(session.admin, ref, reason)
                raise web.HTTPSeeOther(f"/users?{urlencode({'said': said})}")
        else:
            said = f"There is no action {action!r}."
    except (BoothError, ValueError) as exc:  # ValueError: a duration that is none
        said = str(exc)
    raise web.HTTPSeeOther(f"/users/{user_id}?{urlencode({'said': said})}")


async def _user_photo(request: web.Request, session: SignedIn) -> web.StreamResponse:
    booth = request.app[_BOOTH]
    photo = int(request.match_info["photo"])
    if not hmac.compare_digest(request.match_info["signature"], _sign(session, f"photo:{photo}")):
        raise web.HTTPNotFound()
    try:
        data = await booth.admin.photo(session.admin, f"#{request.match_info['user']}", photo)
    except BoothError:
        raise web.HTTPNotFound() from None
    return web.Response(body=data, content_type=_image_type(data))


def _age(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


async def _picture(request: web.Request, session: SignedIn) -> web.StreamResponse:
    booth = request.app[_BOOTH]
    item = int(request.match_info["item"])
    if not hmac.compare_digest(request.match_info["signature"], _sign(session, item)):
        raise web.HTTPNotFound()
    await booth.admin.authorize(session.admin, "review")
    blob = await _picture_blob(booth, await booth.repo.review_item(item))
    if blob is None:
        raise web.HTTPNotFound()
    data = await booth.blobs.get(blob)
    return web.Response(body=data, content_type=_image_type(data))


async def _picture_blob(booth: Booth, item: ReviewItem | None) -> str | None:
    """The picture an open item is about: the blocked image kept, or a reported job's
    first."""
    if item is None or item.status != "open":
        return None
    if item.blob:
        return item.blob
    if item.kind == "report" and item.job_id is not None:
        images = await booth.repo.images_of_job(item.job_id)
        return images[0].blob if images else None
    return None


def _sign(session: SignedIn, what: int | str) -> str:
    """A picture URL's signature: only this session can make or use it."""
    name = what if isinstance(what, str) else f"review:{what}"
    digest = hmac.new(session.csrf.encode(), name.encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


def _image_type(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


async def _static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in _STATIC:  # a fixed list: no path from the request reaches the disk
        raise web.HTTPNotFound()
    body = resources.files("bot.web").joinpath("static", name).read_bytes()
    return web.Response(body=body, content_type=_STATIC[name], charset="utf-8")


def _render(
    request: web.Request, template: str, values: dict[str, Any], *, status: int = 200
) -> web.Response:
    page = request.app[_TEMPLATES].get_template(template).render(**values)
    return web.Response(text=page, content_type="text/html", charset="utf-8", status=status)

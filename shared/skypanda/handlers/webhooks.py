"""Webhook management: owners register, list and remove the URLs their ends are POSTed to,
read (or rotate) their signing secret, and read their deliveries. A user manages their own;
an admin anyone's (`owner` None: everyone's, for lists)."""

from __future__ import annotations

from skypanda.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from skypanda.domain.notifications import check_webhook_url
from skypanda.domain.webhooks import MAX_WEBHOOKS_PER_OWNER, Delivery, Webhook
from skypanda.handlers.notify import new_secret
from skypanda.handlers.services import Services, new_id


def _acting_for(caller: str, owner: str | None, admin: bool) -> str:
    """Whose webhooks the caller manages: their own, or (an admin) `owner`'s.

    Raises:
        Forbidden: a user naming another owner.
    """
    if owner is None or owner == caller:
        return caller
    if not admin:
        raise Forbidden(f"{caller} cannot manage the webhooks of {owner}")
    return owner


def add(
    svc: Services, caller: str, url: str, *, owner: str | None = None, admin: bool = False
) -> tuple[Webhook, str]:
    """Register `url` for the owner; return the webhook and the owner's signing secret.

    Raises:
        InvalidInput: not an http(s) URL. Forbidden: another's, and no admin.
        Conflict: the owner has MAX_WEBHOOKS_PER_OWNER webhooks, or this URL already.
    """
    who = _acting_for(caller, owner, admin)
    try:
        check_webhook_url(url)
    except ValueError as e:
        raise InvalidInput(f"url: {e}") from e
    hook = Webhook(id=new_id("wh"), owner=who, url=url, created_at=svc.clock.now())
    have = svc.webhooks.list_webhooks(who)
    if any(h.url == hook.url for h in have):
        raise Conflict(f"{who} has a webhook for {url} already")
    if len(have) >= MAX_WEBHOOKS_PER_OWNER:
        raise Conflict(f"{who} has {len(have)} webhooks: at most {MAX_WEBHOOKS_PER_OWNER}")
    svc.webhooks.add_webhook(hook)
    return hook, svc.webhooks.webhook_secret(who, new_secret())


def listed(svc: Services, caller: str, *, owner: str | None, admin: bool) -> list[Webhook]:
    """The caller's webhooks; an admin's call without `owner` lists everyone's."""
    if admin and owner is None:
        return svc.webhooks.list_webhooks(None)
    return svc.webhooks.list_webhooks(_acting_for(caller, owner, admin))


def remove(svc: Services, caller: str, hook_id: str, *, admin: bool = False) -> Webhook:
    """Remove a webhook of the caller's (an admin: anyone's).

    Raises:
        NotFound: no such webhook (or, to a user, not theirs).
    """
    mine = {h.id for h in svc.webhooks.list_webhooks(None if admin else caller)}
    if hook_id not in mine:
        raise NotFound(f"no webhook with id {hook_id!r}", webhook_id=hook_id)
    return svc.webhooks.remove_webhook(hook_id)


def secret(
    svc: Services, caller: str, *, owner: str | None = None, admin: bool = False, rotate: bool
) -> str:
    """The owner's signing secret (made now if none); `rotate`: a new one replaces it."""
    who = _acting_for(caller, owner, admin)
    if rotate:
        fresh = new_secret()
        svc.webhooks.set_webhook_secret(who, fresh)
        return fresh
    return svc.webhooks.webhook_secret(who, new_secret())


def deliveries(
    svc: Services, caller: str, *, subject: str | None, admin: bool, limit: int = 50
) -> list[Delivery]:
    """The latest deliveries with their attempts: the caller's (an admin: everyone's)."""
    return svc.webhooks.list_deliveries(None if admin else caller, subject=subject, limit=limit)

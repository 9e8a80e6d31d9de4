"""Webhook management: owners register, list and remove the URLs their ends are POSTed to
(all of theirs, or one task's or workflow's by its id), read (or rotate) their signing secret,
and read their deliveries. A user manages their own; an admin anyone's (`owner` None:
everyone's, for lists)."""

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
    svc: Services,
    caller: str,
    url: str,
    *,
    owner: str | None = None,
    admin: bool = False,
    task_id: str | None = None,
    workflow_id: str | None = None,
) -> tuple[Webhook, str]:
    """Register `url` for the owner (every notification of theirs), or for one existing task
    or workflow (`task_id`, `workflow_id`: as if the URL were in its `notify:`; the webhook is
    its owner's); return the webhook and the owner's signing secret.

    Raises:
        InvalidInput: not an http(s) URL, or both a task and a workflow.
        NotFound: no such task or workflow. Forbidden: another's, and no admin.
        Conflict: the owner has MAX_WEBHOOKS_PER_OWNER webhooks, or this URL for it already.
    """
    try:
        check_webhook_url(url)
    except ValueError as e:
        raise InvalidInput(f"url: {e}") from e
    subject, who = _scope(svc, caller, owner, admin, task_id, workflow_id)
    hook = Webhook(id=new_id("wh"), owner=who, url=url, created_at=svc.clock.now(), subject=subject)
    have = svc.webhooks.list_webhooks(who)
    if any(h.url == hook.url and h.subject == subject for h in have):
        raise Conflict(
            f"{who} has a webhook for {url} already" + (f" on {subject}" if subject else "")
        )
    if len(have) >= MAX_WEBHOOKS_PER_OWNER:
        raise Conflict(f"{who} has {len(have)} webhooks: at most {MAX_WEBHOOKS_PER_OWNER}")
    svc.webhooks.add_webhook(hook)
    return hook, svc.webhooks.webhook_secret(who, new_secret())


def _scope(
    svc: Services,
    caller: str,
    owner: str | None,
    admin: bool,
    task_id: str | None,
    workflow_id: str | None,
) -> tuple[str | None, str]:
    """The subject a webhook is for (None: all the owner's) and whose it is.

    Raises:
        InvalidInput: both a task and a workflow, or an owner with either.
        NotFound: no such task or workflow. Forbidden: not the caller's, and no admin.
    """
    if task_id is None and workflow_id is None:
        return None, _acting_for(caller, owner, admin)
    if task_id is not None and workflow_id is not None:
        raise InvalidInput("a webhook is for a task or a workflow, not both")
    if owner is not None:
        raise InvalidInput("a task's or workflow's webhook is its owner's: name no owner")
    if task_id is not None:
        kind, ident, whose = "task", task_id, svc.tasks.get_task(task_id, counts=False).owner
    else:
        assert workflow_id is not None
        kind, ident, whose = "workflow", workflow_id, svc.workflows.get_workflow(workflow_id).owner
    if whose != caller and not admin:
        raise Forbidden(f"{kind} {ident} belongs to {whose}; {caller} cannot add its webhooks")
    return f"{kind}s/{ident}", whose


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

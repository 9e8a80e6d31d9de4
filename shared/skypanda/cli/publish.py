"""`skypanda publish FILE`: submit a task or workflow by Pub/Sub message, as another pipeline
would (the message format: `runtime.intake`).

Light to import: the Pub/Sub client is imported when the command runs, so that registering it
costs the CLI's other commands nothing (import-linter checks it).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import click

from skypanda.cli.connect import find_token
from skypanda.domain.errors import InvalidInput
from skypanda.domain.workflow import WorkflowSpec
from skypanda.formats.taskfile import parse_spec
from skypanda.runtime.home import default_home
from skypanda.runtime.intake import KEY, encode_submission

PUBLISH_TIMEOUT_S = 60.0


def default_key(content: bytes) -> str:
    """The key of a file published without `--key`: its content's sha256, so publishing the
    same file again (a retry) makes no second task."""
    return hashlib.sha256(content).hexdigest()


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--key", help="Client key: one task or workflow per key [default: the file's sha256]."
)
@click.option(
    "--project", envvar="GOOGLE_CLOUD_PROJECT",
    help="Google Cloud project [default: $GOOGLE_CLOUD_PROJECT, else the credentials' project].",
)  # fmt: skip
@click.option(
    "--topic", help="Topic name or projects/P/topics/T [default: $SKYPANDA_PREFIX + "
    "skypanda-submission].",
)  # fmt: skip
def publish(file: str, key: str | None, project: str | None, topic: str | None) -> None:
    """Submit a task or workflow FILE by Pub/Sub message (the emulator's when
    PUBSUB_EMULATOR_HOST is set), signed with your login; print the message id and key.

    The file is checked here first; the server checks it again, and a refused one comes back
    as a dev.skypanda.submission.rejected event on skypanda-notifications."""
    path = Path(file)
    try:
        content = path.read_bytes()
        text = content.decode("utf-8")
        spec = parse_spec(text, str(path))
    except (OSError, UnicodeDecodeError) as e:
        raise click.ClickException(f"{path}: cannot read file: {e}") from e
    except InvalidInput as e:
        click.echo(f"error: {e.message}", err=True)
        raise SystemExit(2) from e
    key = key or default_key(content)
    if not KEY.fullmatch(key):
        raise click.BadParameter(f"must match {KEY.pattern}", param_hint="--key")
    kind = "workflow" if isinstance(spec, WorkflowSpec) else "task"
    content_type = "application/json" if path.suffix.lower() == ".json" else "application/yaml"
    token = find_token(default_home())
    if not token:
        raise click.ClickException("no credential: `skypanda login`, or set SKYPANDA_TOKEN")
    try:
        data = encode_submission(kind, text, content_type)
    except InvalidInput as e:
        raise click.ClickException(e.message) from e
    message_id = _send(data, key, token, project, topic)
    click.echo(f"published {kind} {spec.name}: message {message_id}, key {key}")


def _send(data: bytes, key: str, token: str, project: str | None, topic: str | None) -> str:
    from google.api_core import exceptions as gexc
    from google.cloud import pubsub_v1

    from skypanda.adapters.gcp.topology import topic_name
    from skypanda.domain.events import EventType
    from skypanda.runtime.gcp import project_id

    publisher = pubsub_v1.PublisherClient()
    name = topic or topic_name(
        EventType.SUBMISSION, f"{os.environ.get('SKYPANDA_PREFIX', '')}skypanda"
    )
    if "/" not in name:
        try:
            name = publisher.topic_path(project or project_id(), name)
        except InvalidInput as e:
            raise click.ClickException(e.message) from e
    try:
        future = publisher.publish(name, data, key=key, authorization=f"Bearer {token}")
        return str(future.result(timeout=PUBLISH_TIMEOUT_S))
    except (gexc.GoogleAPIError, TimeoutError) as e:
        raise click.ClickException(f"Pub/Sub did not accept the message on {name}: {e}") from e

"""`skypanda watch add|list|remove`: watch rules (new objects under a source become inputs of
tasks made from a template, in batches of N objects or T seconds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from skypanda.cli.connect import BadInput, call, client
from skypanda.domain.errors import InvalidInput

SERVER = click.option(
    "--server",
    envvar="SKYPANDA_SERVER",
    help="Server URL (default: the one `skypanda up` started).",
)


def _mapping(path: Path, what: str) -> dict[str, Any]:
    from skypanda.formats.taskfile import load_yaml  # YAML and the models: when used

    try:
        _, data = load_yaml(path.read_text(), str(path))
    except (OSError, InvalidInput) as e:
        raise BadInput(getattr(e, "message", str(e))) from e
    if not isinstance(data, dict):
        raise BadInput(f"{path}: a {what} must be a mapping of fields")
    return data


def rule_body(
    file: Path | None,
    source: str | None,
    template: Path | None,
    name: str | None,
    batch: int | None,
    every: str | None,
) -> dict[str, Any]:
    """The rule to send: FILE's fields, overridden by the options given.

    Raises:
        BadInput: neither a FILE nor --source and --template.
    """
    body = _mapping(file, "watch file") if file is not None else {}
    if template is not None:
        body["template"] = _mapping(template, "task file")
    given = {"source": source, "batch": batch, "every": every, "name": name}
    body.update({k: v for k, v in given.items() if v is not None})
    if "name" not in body and isinstance(body.get("template"), dict):
        body["name"] = body["template"].get("name")
    if not body.get("source") or not body.get("template"):
        raise BadInput("give a watch FILE, or --source and --template")
    return body


@click.group()
def watch() -> None:
    """Watch rules: new objects under gs://bucket/prefix or file:///folder become task inputs."""


@watch.command()
@click.argument(
    "file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--source", help="gs://bucket/prefix or file:///absolute/folder")
@click.option("--template", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A task file without inputs: the new objects become its inputs.")  # fmt: skip
@click.option("--name", help="The rule's name (default: the template's name).")
@click.option("--batch", type=int, help="Objects per task (default 100).")
@click.option("--every", help="Seconds (or 30s, 10m, 1h) after a batch's first object that "
              "it is submitted anyway (default 60).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the rule as JSON.")
@SERVER
def add(
    file: Path | None,
    source: str | None,
    template: Path | None,
    name: str | None,
    batch: int | None,
    every: str | None,
    as_json: bool,
    server: str | None,
) -> None:
    """Add a watch rule (from FILE, or from --source and --template)."""
    body = rule_body(file, source, template, name, batch, every)
    rule = call(client(server), "POST", "/v1/watches", body)
    click.echo(json.dumps(rule) if as_json else f"watch {rule['name']} added: {rule['source']}")


@watch.command(name="list")
@click.option("--all", "everyone", is_flag=True, help="Everyone's rules (admins).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@SERVER
def list_(everyone: bool, as_json: bool, server: str | None) -> None:
    """Your watch rules, with their latest batches."""
    params = {"all": "1"} if everyone else {}
    rules = call(client(server), "GET", "/v1/watches", params=params)["watches"]
    if as_json:
        click.echo(json.dumps(rules))
        return
    for r in rules:
        state = "enabled" if r["enabled"] else "disabled"
        click.echo(f"{r['name']:<24} {r['owner']:<12} {state:<8} batch {r['batch']} / "
                   f"{r['every']:g} s  {r['source']}")  # fmt: skip
        for b in r["batches"]:
            click.echo(f"    batch {b['seq']:<5} {b['status']:<9} {b['count']:>6} objects  "
                       f"{b['task_id'] or b['reason']}")  # fmt: skip


@watch.command()
@click.argument("name")
@SERVER
def remove(name: str, server: str | None) -> None:
    """Remove a watch rule (objects already in its open batch are not submitted)."""
    call(client(server), "DELETE", f"/v1/watches/{name}")
    click.echo(f"watch {name} removed")

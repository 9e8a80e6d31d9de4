"""`skypanda monitor`: a one-time link that logs this user into the web monitor (like
Jupyter's token URL).

The command asks the server, with the credential every command sends (`connect.find_token`),
for a login link (`POST /ui/link`): its code is the token sealed under the server's session
key, good for two minutes and for one login. Opening it starts a browser session and shows the
tasks; the address bar keeps no secret (the login answers with a redirect).
"""

from __future__ import annotations

import webbrowser

import click

from skypanda.cli.connect import call, client

server_opt = click.option(
    "--server",
    envvar="SKYPANDA_SERVER",
    help="Server URL (default: the one `skypanda up` started).",
)


@click.command()
@click.option("--open", "open_", is_flag=True, help="Open the link in a web browser too.")
@server_opt
def monitor(open_: bool, server: str | None) -> None:
    """Print a one-time link that logs you into the web monitor (valid two minutes)."""
    link = call(client(server), "POST", "/ui/link")
    url = str(link["url"])
    click.echo(url)
    click.echo(
        f"a one-time login for {link.get('name')}, valid {link.get('expires_in', 120)} s; "
        "after that the monitor is at " + url.split("/ui/", 1)[0] + "/ui/",
        err=True,
    )
    if open_ and not webbrowser.open(url):
        click.echo("no web browser found here: open the link above yourself", err=True)

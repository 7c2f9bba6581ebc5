"""`airdisplay keys`: create, list and revoke API keys; `allow-open` to leave operator routes open again."""

from __future__ import annotations

from pathlib import Path

import click

from ..access import KeysFile, OperatorKeysRemain, Role, UnknownKey
from ._common import DATA_DIR_OPTION
from ._common import fail as _fail


@click.group()
def keys() -> None:
    """API keys: create, list and revoke (a running server picks changes up within a second)."""


@keys.command("create")
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role]),
    required=True,
    help="operator: everything; submitter: submit messages when submitting needs a key.",
)
@click.option("--label", default="", help="A note saying whose key it is.")
@DATA_DIR_OPTION
def keys_create(role: str, label: str, data_dir: Path) -> None:
    """Create a key and print it once: only its hash is stored."""
    try:
        record, key = KeysFile(data_dir).create(Role(role), label)
    except (ValueError, OSError) as exc:
        _fail(str(exc))
    click.echo(key)
    click.echo(f"created {record.role.value} key {record.id}; it is shown only now, keep it secret", err=True)


@keys.command("list")
@DATA_DIR_OPTION
def keys_list(data_dir: Path) -> None:
    """List the keys (ids, roles, labels; never secrets)."""
    try:
        records = KeysFile(data_dir).load()
    except ValueError as exc:
        _fail(str(exc))
    for record in records:
        click.echo(f"{record.id}  {record.role.value:<9}  {record.created_at}  {record.label}")


@keys.command("revoke")
@click.argument("key_id")
@DATA_DIR_OPTION
def keys_revoke(key_id: str, data_dir: Path) -> None:
    """Revoke a key by its id; a running server refuses it within a second."""
    try:
        record = KeysFile(data_dir).revoke(key_id)
    except (UnknownKey, ValueError, OSError) as exc:
        _fail(str(exc))
    click.echo(f"revoked {record.role.value} key {record.id}", err=True)


@keys.command("allow-open")
@DATA_DIR_OPTION
def keys_allow_open(data_dir: Path) -> None:
    """Once no operator key is left, leave operator routes open again on a loopback server (try-it-out).

    Once an operator key has existed in a data directory, losing every one locks operator routes; this
    undoes that on purpose. A server that trusts a proxy, or listens beyond loopback, still needs a key.
    """
    try:
        forgotten = KeysFile(data_dir).allow_open()
    except (OperatorKeysRemain, ValueError, OSError) as exc:
        _fail(str(exc))
    if forgotten:
        click.echo(
            "operator routes are open again to this machine on a loopback server without an operator key "
            "(a running one within a second); a key created or given at start-up locks them again",
            err=True,
        )
    else:
        click.echo("no operator key was recorded here: operator routes were not locked", err=True)

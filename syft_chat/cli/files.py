"""The attachment commands: ``attachments`` (list them with their state) and ``save``
(copy one verified attachment out). Both start a client: a state is computed from the
local synced copy, which only the client knows where to find."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import click

from syft_chat.cli.env import Env, _json_option, pass_env
from syft_chat.display import attachment_line, local_time, printable, short_id

__all__ = ["attachments", "save"]


@click.command()
@click.option("--with", "with_user", metavar="EMAIL", help="Only the conversation with EMAIL.")
@click.option("--group", "group_id", metavar="GROUP_ID", help="Only this group's conversation.")
@_json_option
@pass_env
def attachments(env: Env, with_user: str | None, group_id: str | None, as_json: bool) -> None:
    """List the attachments of your messages (both directions): message id, sender,
    attachment id, name, size and state (pending, available, corrupt, revoked, deleted)."""
    with env.client() as client:
        found = client.list_attachments(with_user=with_user, group_id=group_id)
    if as_json:
        env.json(
            [
                {
                    "msg_id": m.msg_id,
                    "sender": m.sender,
                    "timestamp": m.timestamp.isoformat(),
                    **a.model_dump(mode="json", exclude={"announced"}),
                }
                for m, a in found
            ]
        )
        return
    if not found:
        env.note("no attachments")
        return
    for message, attachment in found:
        who = printable(message.sender, one_line=True)
        env.out(
            f"{local_time(message.timestamp)}  {short_id(message.msg_id)}  {who}  "
            f"{attachment_line(attachment)}"
        )


@click.command()
@click.argument("msg_id", metavar="MSG_ID")
@click.argument("attachment_id", metavar="ATT_ID")
@click.argument("dest", type=click.Path(dir_okay=True, writable=True), metavar="DEST")
@click.option("--sender", metavar="EMAIL", help="The message's sender (ids are per sender).")
@click.option("--force", is_flag=True, help="Replace DEST if it exists.")
@pass_env
def save(
    env: Env, msg_id: str, attachment_id: str, dest: str, sender: str | None, force: bool
) -> None:
    """Copy attachment ATT_ID (a1, a2... as `attachments` lists them) of message MSG_ID to
    DEST (a file, or a folder to put it in under its own name). Only an available
    attachment (whole, its SHA-256 checked) is copied; otherwise it says its state."""
    with env.client() as client:
        message = client.get_message(msg_id, sender=sender)
        if message is None:  # a unique prefix, as `syft-chat history` shows ids
            with env.reader() as (history, _):
                found = history.find(msg_id) if history.exists else None
            if found is not None:
                msg_id = found.message.msg_id
        source = client.attachment_path(msg_id, attachment_id, sender=sender)
        target = Path(dest).expanduser()
        if target.is_dir():
            target = target / source.name
        if target.exists() and not force:
            raise click.ClickException(f"{target} exists; pass --force to replace it")
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:  # copied from the very descriptor that was verified, never by name again
            with (
                client.open_attachment(msg_id, attachment_id, sender=sender) as src,
                open(tmp, "wb") as out,
            ):
                shutil.copyfileobj(src, out, 1024 * 1024)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    env.out(f"saved {printable(source.name, one_line=True)} to {printable(str(target))}")

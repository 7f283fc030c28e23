"""``kubetrio history KIND/NAME`` and the ``kubectl history`` plugin (``kubectl-history``).

Talks to the cluster of a kubeconfig (``--kubeconfig``, ``$KUBECONFIG``, ``~/.kube/config``)
like kubectl, through the API server's ``history`` subresource:

* ``history deploy/web``: the kept revisions, newest first (time, revision, type, user,
  field manager, verb, the fields that changed);
* ``--diff 12..15`` (or ``12..`` for 12 against the newest, ``15`` for 15 against the
  one before): the fields that differ, coloured, managedFields/resourceVersion/generation
  left out;
* ``--at 2026-12-07T15:00:00Z``: the object as it was then;
* ``history deploy/web restore 12``: write revision 12 back — an ordinary update with a
  resourceVersion precondition (``--resource-version``, default the current one), or a
  create for a deleted object;
* ``-o json|yaml``: the RevisionList, or the object for ``--at`` and ``restore``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import trio
import typer
import yaml
from rich.markup import escape
from rich.table import Table

from kubetrio.client import (
    Client,
    ClientError,
    KubeObject,
    context_namespace,
    diff_revisions,
    from_kubeconfig,
    parse_time,
    summarize_change,
)
from kubetrio.client._history import entries, resolve

from ._console import console, err_console
from ._errors import CommandError

_COLOURS = {"+": "green", "-": "red", "~": "yellow"}


def _split_target(target: str) -> tuple[str, str]:
    kind, sep, name = target.partition("/")
    if not sep or not kind or not name:
        raise CommandError(f"name the object as KIND/NAME (e.g. deploy/web), not {target!r}")
    return kind, name


def _dump(value: Any, output: str) -> None:
    if output == "json":
        sys.stdout.write(json.dumps(value, indent=2) + "\n")
    else:
        sys.stdout.write(yaml.safe_dump(value, sort_keys=False))


def _fmt(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def _print_diff(title: str, old: KubeObject | None, new: KubeObject | None) -> None:
    console.print(f"[bold]{escape(title)}[/]")
    changes = diff_revisions(old, new)
    if not changes:
        console.print("  (no field changes)")
    for op, path, before, after in changes:
        colour = _COLOURS[op]
        if op == "~":
            text = f"{path}: {_fmt(before)} → {_fmt(after)}"
        else:
            text = f"{path}: {_fmt(after if op == '+' else before)}"
        console.print(f"[{colour}]{op} {escape(text)}[/]", soft_wrap=True)


async def _run(
    client: Client,
    kind: str,
    name: str,
    namespace: str,
    *,
    action: list[str],
    diff: str,
    at: str,
    output: str,
    resource_version: str,
) -> None:
    api_version, resource, namespaced = await resolve(client, kind)
    ns = namespace if namespaced else ""
    what = f"{resource}/{name}"
    if action:
        if action[0] != "restore" or len(action) != 2:
            raise CommandError(f"unknown action {' '.join(action)!r}: use 'restore REVISION'")
        restored = await client.restore(
            api_version, resource, name, action[1], namespace=ns, resource_version=resource_version
        )
        if output:
            _dump(restored, output)
        else:
            rv = restored["metadata"]["resourceVersion"]
            console.print(f"{what} restored to revision {action[1]} (now resourceVersion {rv})")
        return
    if at:
        try:
            when = parse_time(at)
        except ValueError:
            raise CommandError(
                f"--at {at!r} is not an RFC 3339 time (2026-12-07T15:00:00Z)"
            ) from None
        entry = await client.history_at(api_version, resource, name, when, namespace=ns)
        _dump(entry["object"], output or "yaml")
        return
    if diff:
        old_rev, sep, new_rev = diff.partition("..")
        if not old_rev:
            raise CommandError(f"--diff {diff!r}: use REV1..REV2, REV1.. or REV")
        old: KubeObject | None
        new: KubeObject
        if sep:
            old = await client.history_revision(api_version, resource, name, old_rev, namespace=ns)
            if new_rev:
                new = await client.history_revision(
                    api_version, resource, name, new_rev, namespace=ns
                )
            else:
                new = (await client.history(api_version, resource, name, namespace=ns, limit=1))[
                    "items"
                ][0]
        else:  # one revision against the one before it
            new = await client.history_revision(api_version, resource, name, old_rev, namespace=ns)
            page = await client.history(api_version, resource, name, namespace=ns)
            before = [i for i in page["items"] if int(i["revision"]) < int(new["revision"])]
            old = before[0] if before else None
        if output:
            _dump(
                [
                    {"op": o, "path": p, "old": b, "new": a}
                    for o, p, b, a in diff_revisions(
                        None if old is None else old["object"], new["object"]
                    )
                ],
                output,
            )
            return
        title = f"{what}: revision {old['revision'] if old else '(none)'} → {new['revision']}"
        _print_diff(title, None if old is None else old["object"], new["object"])
        return
    items = [item async for item in entries(client, api_version, resource, name, namespace=ns)]
    if output:
        _dump(
            {"apiVersion": "history.kubetrio.io/v1", "kind": "RevisionList", "items": items}, output
        )
        return
    table = Table(box=None, pad_edge=False)
    for column in ("REVISION", "TIME", "TYPE", "USER", "MANAGER", "VERB", "CHANGES"):
        table.add_column(column)
    for i, item in enumerate(items):
        previous = items[i + 1]["object"] if i + 1 < len(items) else None
        change = (
            "deleted"
            if item["type"] == "DELETED"
            else "created"
            if item["type"] == "ADDED"
            else summarize_change(previous, item["object"])
            if previous is not None
            else "(older revisions not kept)"
        )
        table.add_row(
            item["revision"],
            (item.get("time") or "")[:19].replace("T", " "),
            item["type"],
            escape(item["user"]["username"] or "-"),
            escape(item.get("fieldManager") or "-"),
            item.get("verb") or "-",
            escape(change),
        )
    console.print(table)


def history(
    target: str = typer.Argument(..., metavar="KIND/NAME", help="The object, e.g. deploy/web."),
    action: list[str] = typer.Argument(
        None, metavar="[restore REVISION]", help="restore REVISION: write that revision back."
    ),
    namespace: str = typer.Option(
        "", "--namespace", "-n", help="Namespace (default: the context's)."
    ),
    diff: str = typer.Option("", "--diff", help="REV1..REV2 (or REV1.., or REV): changed fields."),
    at: str = typer.Option("", "--at", help="The object as it was at this RFC 3339 time."),
    output: str = typer.Option("", "--output", "-o", help="json or yaml."),
    resource_version: str = typer.Option(
        "", "--resource-version", help="restore only if the object is at this resourceVersion."
    ),
    kubeconfig: Path = typer.Option(None, "--kubeconfig", help="kubeconfig (as kubectl's)."),
    context: str = typer.Option("", "--context", help="kubeconfig context."),
) -> None:
    """Every kept revision of an object: who changed what and how; diff, as-of, restore."""
    if output not in ("", "json", "yaml"):
        raise CommandError(f"--output {output!r}: use json or yaml")
    kind, name = _split_target(target)
    try:
        client = from_kubeconfig(kubeconfig, context=context)
    except (ValueError, OSError) as exc:
        raise CommandError(str(exc)) from None
    ns = namespace or context_namespace(kubeconfig, context=context)

    async def run() -> None:
        async with client:
            await _run(
                client,
                kind,
                name,
                ns,
                action=list(action or []),
                diff=diff,
                at=at,
                output=output,
                resource_version=resource_version,
            )

    try:
        trio.run(run)
    except ClientError as exc:
        raise CommandError(f"Error from server ({exc.reason or exc.code}): {exc.message}") from None


def kubectl_main() -> None:
    """Entry point of ``kubectl-history``: ``kubectl history deploy/web`` runs it."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(history)
    try:
        app(prog_name="kubectl history", standalone_mode=True)
    except CommandError as exc:
        err_console.print(f"error: {escape(str(exc))}", soft_wrap=True)
        raise SystemExit(1) from None

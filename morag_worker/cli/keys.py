"""``morag keys create|list|revoke``: API keys (admins; a user may make its own worker keys)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from morag_worker.cli.api import ApiFailure
from morag_worker.cli.args import add_command
from morag_worker.cli.common import connect, seg
from morag_worker.cli.output import ago, local_time, print_json, table


def register(sub: Any) -> None:
    keys = sub.add_parser("keys", help="manage API keys", description="Manage API keys.")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    create = add_command(
        keys_sub,
        "create",
        "create a key; prints only the key (or writes it with --output)",
        create_key,
    )
    create.add_argument("--user", required=True, help="the user the key belongs to")
    create.add_argument("--role", required=True, choices=["worker", "user", "admin"])
    create.add_argument("--pool", action="store_true", help="a worker key serving every user")
    create.add_argument("--expires-days", type=float, help="the key stops working after this")
    create.add_argument("--name", default="", help="a label for 'morag keys list'")
    create.add_argument(
        "--output", metavar="FILE", help="write the key to FILE (mode 0600) instead of printing it"
    )
    create.add_argument("--force", action="store_true", help="replace an existing --output FILE")
    add_command(keys_sub, "list", "list keys (admin)", list_keys)
    revoke = add_command(keys_sub, "revoke", "revoke a key (admin)", revoke_key)
    revoke.add_argument("key_id", help="the key's id (first column of 'morag keys list')")


def write_secret(path: Path, secret: str, force: bool) -> None:
    """Write ``secret`` to ``path`` readable by its owner only (0600, never wider, not even
    for a moment); an existing file is an error unless ``force``, then replaced atomically."""
    if force:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secret + "\n")
        os.replace(tmp, path)
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ApiFailure(f"--output {path}: the file exists; pass --force to replace it") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")


def _check_output(target: str | None, force: bool) -> Path | None:
    """Refuse a bad --output before the server makes a key that would then be lost."""
    if not target:
        return None
    path = Path(target)
    if path.is_dir():
        raise ApiFailure(f"--output {target}: is a directory; name a file")
    if path.exists() and not force:
        raise ApiFailure(f"--output {target}: the file exists; pass --force to replace it")
    if not path.parent.is_dir():
        raise ApiFailure(f"--output {target}: directory {path.parent} does not exist")
    return path


def create_key(args: argparse.Namespace) -> int:
    output = _check_output(args.output, args.force)
    body = {
        "user_id": args.user,
        "role": args.role,
        "pool": args.pool,
        "expires_days": args.expires_days,
        "name": args.name,
    }
    created = connect(args).post_json("/api/v1/keys", body)
    if output is None:
        if args.json:
            print_json(created)
        else:
            print(created["key"])
        return 0
    write_secret(output, created["key"], args.force)
    info = created["info"]
    if args.json:
        print_json({"info": info, "file": str(output)})
    else:
        print(
            f"wrote the {info['role']} key {info['key_id']} for {info['user_id']} "
            f"to {output} (mode 0600)",
            file=sys.stderr,
        )
    return 0


def list_keys(args: argparse.Namespace) -> int:
    keys = connect(args).get("/api/v1/keys")["keys"]
    if args.json:
        print_json({"keys": keys})
        return 0
    rows = []
    for key in keys:
        state = "revoked" if key["revoked_at"] else "active"
        if state == "active" and key["expires_at"] and key["expires_at"] < time.time():
            state = "expired"
        rows.append(
            [
                key["key_id"],
                key["prefix"] + "…",
                key["user_id"],
                key["role"] + (" (pool)" if key["pool"] else ""),
                state,
                local_time(key["created_at"]),
                local_time(key["expires_at"]) if key["expires_at"] else "never",
                ago(key["last_used_at"]) if key["last_used_at"] else "never",
                key["name"],
            ]
        )
    headers = ["id", "prefix", "user", "role", "state", "created", "expires", "used", "name"]
    print(table(headers, rows) if rows else "no keys")
    return 0


def revoke_key(args: argparse.Namespace) -> int:
    info = connect(args).delete(f"/api/v1/keys/{seg(args.key_id)}")
    if args.json:
        print_json(info)
    else:
        print(f"revoked {info['key_id']} ({info['role']} key of {info['user_id']})")
    return 0

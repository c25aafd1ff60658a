"""
C{disperse keys}: the gossip keyring of every member.

A key rotation is three steps, each finished on every member before the
next begins: install the new key (every member can then decrypt it), use
it (members encrypt with it), remove the old one. A step that fails on
some member stops the rotation there, where the cluster still talks: a
key installed or made primary on some members only is one they all can
decrypt.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from disperse.cli.client import Client, ClientError

OPERATIONS = ("install", "use", "remove")
NEW_KEY_SIZE = 32
# Members in these states run and must take every step.
RUNNING = ("alive", "suspect")


def fingerprint(key: bytes) -> str:
    """
    The short name a node shows for C{key}, as C{/cluster/keys} does.
    """
    return hashlib.sha256(key).hexdigest()[:16]


def decodeKey(text: str) -> bytes:
    """
    @raise ValueError: if C{text} is not base64 of an AES key.
    """
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise ValueError("a gossip key must be base64") from None
    if len(key) not in (16, 24, 32):
        raise ValueError("a gossip key must be 16, 24 or 32 bytes")
    return key


def newKey() -> bytes:
    return os.urandom(NEW_KEY_SIZE)


@dataclass(frozen=True)
class Target:
    """
    A member to change, and where its HTTP API is.
    """

    name: str
    url: str


@dataclass(frozen=True)
class Outcome:
    """
    What one member answered to one step: its keyring, or an error.
    """

    member: str
    keyring: dict[str, Any] | None = None
    error: str | None = None


class RotationFailed(ClientError):
    def __init__(self, step: str, outcomes: list[Outcome]) -> None:
        failed = [o for o in outcomes if o.error is not None]
        details = "; ".join(f"{o.member}: {o.error}" for o in failed)
        super().__init__(f"{step} failed on {len(failed)} member(s): {details}")
        self.step = step
        self.outcomes = outcomes


def targets(client: Client, everyMember: bool = True) -> tuple[list[Target], list[str]]:
    """
    The running members to change (just the node asked, unless
    C{everyMember}), and the names of members skipped because they are
    dead or have left.

    @raise ClientError: if a running member publishes no HTTP address.
    """
    members = client.getJSON("/cluster/members", "listing members")
    if not everyMember or not members:
        health = client.getJSON("/health", "asking the node its name")
        return [Target(str(health.get("node", client.node)), client.node)], []
    chosen, skipped = [], []
    for member in sorted(members, key=lambda m: str(m.get("name"))):
        if member.get("state") not in RUNNING:
            skipped.append(str(member.get("name")))
            continue
        address = member.get("http_addr")
        if not address:
            raise ClientError(
                f"member {member.get('name')} publishes no HTTP address,"
                " so its keyring cannot be changed from here"
            )
        scheme = client.node.split("://", 1)[0]
        chosen.append(Target(str(member["name"]), f"{scheme}://{address}"))
    return chosen, skipped


def keyrings(chosen: list[Target], connect: Callable[[str], Client]) -> list[Outcome]:
    """
    Every target's keyring, or why it could not be read.
    """
    return [_call(target, connect, None, None) for target in chosen]


def step(
    chosen: list[Target],
    operation: str,
    key: bytes,
    connect: Callable[[str], Client],
) -> list[Outcome]:
    """
    Install, use or remove C{key} on every target.

    @raise RotationFailed: if some target did not take the step.
    """
    outcomes = [_call(target, connect, operation, key) for target in chosen]
    if any(o.error is not None for o in outcomes):
        raise RotationFailed(operation, outcomes)
    return outcomes


def _call(
    target: Target,
    connect: Callable[[str], Client],
    operation: str | None,
    key: bytes | None,
) -> Outcome:
    client = connect(target.url)
    try:
        if operation is None:
            keyring = client.getJSON("/cluster/keys", f"{target.name}: keyring")
        else:
            assert key is not None
            keyring = client.postJSON(
                f"/cluster/keys/{operation}",
                {"key": base64.b64encode(key).decode("ascii")},
                f"{operation} on {target.name}",
            )
    except ClientError as e:
        return Outcome(target.name, error=e.message)
    finally:
        client.close()
    return Outcome(target.name, keyring=keyring)


def rotate(
    chosen: list[Target],
    connect: Callable[[str], Client],
    old: bytes | None,
    new: bytes | None = None,
    onStep: Callable[[str, list[Outcome]], None] = lambda step, outcomes: None,
) -> tuple[bytes, list[Outcome]]:
    """
    Replace C{old} (if given; else keep every installed key) with C{new}
    (a fresh random key if not given) on every target.

    @return: the new key and the keyrings after the last step.
    @raise RotationFailed: at the first step that failed somewhere.
    """
    key = new if new is not None else newKey()
    outcomes = step(chosen, "install", key, connect)
    onStep("install", outcomes)
    outcomes = step(chosen, "use", key, connect)
    wrong = [
        o
        for o in outcomes
        if o.keyring is not None and o.keyring.get("primary") != fingerprint(key)
    ]
    if wrong:
        raise RotationFailed(
            "use",
            [Outcome(o.member, error="the new key is not primary") for o in wrong],
        )
    onStep("use", outcomes)
    if old is not None and old != key:
        outcomes = step(chosen, "remove", old, connect)
        onStep("remove", outcomes)
    return key, outcomes

"""What a linked peer lacks, and the diffs that give it: the answer to its SYNC, and
anti-entropy (gaps that stopped closing: lost frames, lost deletions); and whether a
link agrees with this peer (what ``synced()`` waits for)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

from . import _statevector as sv
from .config import SyncConfig
from .link import Link, Phase
from .replica import StoreReplica

__all__ = ["answer_sync", "anti_entropy", "link_agrees"]

Settle = Callable[[Link], dict[str, sv.StateVector]]
"""What a link's peer holds per store, its latest reports decoded (``SyncEngine._settle``)."""


def answer_sync(
    link: Link,
    named: Iterable[str],
    stores: dict[str, StoreReplica],
    remote: dict[str, sv.StateVector],
) -> None:
    """Queue for ``link`` a diff of each of the ``named`` stores its peer lacks part of
    (``remote``: what it reported holding), unless one is already on its way."""
    for name in named:
        replica = stores.get(name)
        if replica is None:
            continue
        local = replica.state_vector_dict()
        if name in remote and sv.covers(remote[name], local):
            continue
        if name in link.diffed and sv.covers(link.diffed[name], local):
            continue  # SYNCs crossed: everything it lacks is already on its way
        link.out.diffs[name] = replica.diff(sv.encode(remote.get(name, {})))
        link.diffed[name] = dict(local)


def anti_entropy(
    links: Iterable[Link],
    stores: dict[str, StoreReplica],
    settle: Settle,
    now: float,
    config: SyncConfig,
    stats: Counter[str],
) -> None:
    """Repair gaps that stopped closing (lost frames); leave slow links alone.

    A gap is repaired when, for some writer, this peer held more at the last
    check than the link had acknowledged, and the link's acknowledged clock for
    that writer has not moved since. A link that is merely behind (a backlog
    under load) keeps acknowledging, so it is not sent duplicate data.
    """
    for link in links:
        if link.phase is Phase.HANDSHAKE and now - link.opened >= config.sync_interval:
            link.out.sync = True  # our SYNC or theirs was lost: ask again
        if link.backlog:
            continue  # still sending: what the peer lacks may be in the queue
        for name, replica in stores.items():
            local = replica.state_vector_dict()
            remote = settle(link).get(name)
            if remote is not None and sv.covers(remote, local):
                link.suspect.pop(name, None)
                if sv.covers(local, remote):
                    _check_deletions(link, name, replica, remote, stats)
                continue
            _check_gap(link, name, replica, local, remote or {}, stats)


def _check_gap(
    link: Link,
    name: str,
    replica: StoreReplica,
    local: sv.StateVector,
    remote: sv.StateVector,
    stats: Counter[str],
) -> None:
    """The peer lacks some of ``name``: repair it if the gap stopped closing."""
    seen = link.suspect.get(name)
    link.suspect[name] = (dict(local), dict(remote), 0)
    if seen is None:
        return  # a gap first seen now may be in flight
    local_then, remote_then, repairs = seen
    if not _stuck(local_then, remote_then, remote):
        return
    # Backoff: repair at the 1st, 2nd, 4th, 8th... check it stays stuck.
    repairs += 1
    link.suspect[name] = (local_then, remote_then, repairs)
    if repairs & (repairs - 1) == 0:
        stats["repairs"] += 1
        link.out.diffs[name] = replica.diff(sv.encode(remote))
        link.out.states_now.add(name)


def _check_deletions(
    link: Link, name: str, replica: StoreReplica, remote: sv.StateVector, stats: Counter[str]
) -> None:
    """Same state vectors: repair if the deletions differ (a diff carries all of ours).

    A first mismatch asks the peer for its digest now; one that persists with
    our digest unchanged is repaired, with backoff like other repairs.
    """
    ours = replica.delete_digest()
    theirs = link.remote_digests.get(name)
    if theirs is None or theirs == ours:
        link.digest_suspect.pop(name, None)
        return
    seen, repairs = link.digest_suspect.get(name, (b"", 0))
    if seen != ours:
        link.digest_suspect[name] = (ours, 0)
        link.out.states_now.add(name)
        link.out.want_ack = True
        return
    repairs += 1
    link.digest_suspect[name] = (ours, repairs)
    if repairs & (repairs - 1) == 0:
        stats["deletion_repairs"] += 1
        link.out.diffs[name] = replica.diff(sv.encode(remote))
        link.out.want_ack = True


def link_agrees(link: Link, stores: dict[str, StoreReplica], settle: Settle) -> bool:
    """The peer reported holding exactly what this peer holds: every store's state
    vector both ways, and the same deletions where it reported a digest."""
    if link.phase is Phase.HANDSHAKE:
        return False
    remote_states = settle(link)
    if len(remote_states) < len(stores):
        return False
    digests = link.remote_digests
    for name, remote in remote_states.items():
        replica = stores[name]
        local = replica.state_vector_dict()
        if not sv.covers(remote, local) or not sv.covers(local, remote):
            return False
        if name in digests and digests[name] != replica.delete_digest():
            return False
    return True


def _stuck(local_then: sv.StateVector, remote_then: sv.StateVector, remote: sv.StateVector) -> bool:
    """Did some writer's content we held at the last check fail to advance at the peer?"""
    return any(
        clock > remote_then.get(client, 0) and remote.get(client, 0) == remote_then.get(client, 0)
        for client, clock in local_then.items()
    )

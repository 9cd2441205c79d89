"""The store's contract: the durable state the gateway keeps for the Responses API.

Two backends implement :class:`Store`: SQLite (one file, one gateway instance) and PostgreSQL
(several instances may share it). JSON payloads are opaque ``bytes`` to the store; callers encode
and decode them with msgspec. The one exception is a response's ``input_items``, a JSON array
whose elements carry an ``"id"``: the store reads those ids to page through the array.

Ownership: every method that takes ``owner`` matches it too, so stored data is scoped to the
caller's key and another owner sees "not found" (``None``/``False``/``[]``), never an error that
would reveal the id exists. Methods without ``owner`` are the background worker's.

Column truth: ``status``, ``error`` and ``cancel_requested`` are authoritative. The store changes
them on its own (``request_cancel`` of a queued response, ``recover_expired``) without rewriting
the opaque ``response`` JSON, so whoever renders a Response object overlays them on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol

import msgspec

if TYPE_CHECKING:
    from proxy.store.usage import GroupBy, UsageFilters, UsagePage, UsageRecord, UsageTotal

__all__ = [
    "INTERRUPTED_ERROR",
    "KEY_TABLES",
    "STATUSES",
    "ItemPage",
    "Migration",
    "Order",
    "Recovered",
    "ResponseRecord",
    "Status",
    "Store",
    "StoreError",
    "TeamDeletion",
    "check_limit",
    "check_migrations",
    "make_page",
    "page_json_array",
    "pending_migrations",
]

Status = Literal["queued", "in_progress", "completed", "incomplete", "failed", "cancelled"]
STATUSES: tuple[Status, ...] = (
    "queued",
    "in_progress",
    "completed",
    "incomplete",
    "failed",
    "cancelled",
)
Order = Literal["asc", "desc"]
TeamDeletion = Literal["deleted", "missing", "in_use"]
# The tables of virtual keys and teams (their JSON bodies are ``proxy.governance`` records).
KEY_TABLES = {"teams", "virtual_keys"}

# What a background response that ran out of attempts fails with (a Responses API error object).
INTERRUPTED_ERROR = msgspec.json.encode(
    {
        "code": "server_error",
        "message": "The background response was interrupted: the gateway instance running it "
        "stopped before it finished, and it has been retried as often as allowed.",
    }
)


class StoreError(Exception):
    """The store cannot be used as it is (start-up); the message says why."""


class ResponseRecord(msgspec.Struct, kw_only=True):
    """One stored response: the request as accepted, its latest state, and its job fields."""

    id: str
    owner: str
    created_at: float
    updated_at: float
    status: Status
    model: str
    background: bool = False
    stream: bool = False
    previous_response_id: str | None = None
    conversation_id: str | None = None
    request: bytes = b"{}"  # the request as accepted (JSON)
    input_items: bytes = b"[]"  # JSON array of the items this response added (with ids)
    response: bytes | None = None  # the Response object (JSON), latest state
    error: bytes | None = None  # JSON error object when failed
    attempts: int = 0
    lease_owner: str | None = None
    lease_until: float | None = None
    cancel_requested: bool = False


class ItemPage(msgspec.Struct, kw_only=True):
    """One page of items (JSON each) in the order asked for, with the ids for the next cursor."""

    items: list[bytes]
    has_more: bool
    first_id: str | None
    last_id: str | None


class Recovered(NamedTuple):
    """What :meth:`Store.recover_expired` did with each expired lease, by response id."""

    requeued: list[str]
    failed: list[str]
    # A cancel was requested while it ran: it ends cancelled rather than running again.
    cancelled: list[str]


class Migration(NamedTuple):
    """One schema step; ``statements`` run in order inside the start-up transaction."""

    version: int
    name: str
    statements: tuple[str, ...]


class Store(Protocol):
    """The durable state of the Responses API; see the module docstring for the rules."""

    async def close(self) -> None: ...

    # -- responses ----------------------------------------------------------------------------

    async def insert_response(self, rec: ResponseRecord) -> None:
        """Store a new response; its id must be new."""

    async def update_response(
        self,
        id: str,
        *,
        status: Status | None = None,
        response: bytes | None = None,
        error: bytes | None = None,
        input_items: bytes | None = None,
        lease_owner: str | msgspec.UnsetType | None = msgspec.UNSET,
        lease_until: float | msgspec.UnsetType | None = msgspec.UNSET,
        worker: str | None = None,
    ) -> bool:
        """Change the given fields (``None``: keep; for the lease fields ``UNSET`` keeps and
        ``None`` clears) and ``updated_at``. With ``worker``, only while that worker holds the
        lease, so a worker that lost its job cannot overwrite the next attempt. False: no such
        response, or the lease is not ``worker``'s."""

    async def get_response(self, id: str, owner: str) -> ResponseRecord | None: ...

    async def delete_response(self, id: str, owner: str) -> bool:
        """Delete a response and its stream events; False when the owner has no such one."""

    async def input_items(
        self, id: str, owner: str, *, after: str | None, limit: int, order: Order
    ) -> ItemPage | None:
        """A page of the response's input items after the item ``after`` (an id unknown to the
        response gives an empty page); None when the owner has no such response."""

    async def request_cancel(self, id: str, owner: str) -> ResponseRecord | None:
        """Ask to cancel: a queued response is cancelled at once (no worker will run it); an
        in-progress one gets ``cancel_requested`` for its worker to act on; a finished one is
        left as it is. Returns the record after the change, None when not found."""

    # -- background jobs ----------------------------------------------------------------------

    async def claim_next(self, worker: str, lease_s: float) -> ResponseRecord | None:
        """Move the oldest queued background response to ``in_progress`` with a lease for
        ``worker`` (``attempts`` + 1) and return it; atomic across instances. ``worker`` should
        be unique per claim (instance id + random) so that the lease fences one attempt."""

    async def renew_lease(self, id: str, worker: str, lease_s: float) -> bool:
        """Extend ``worker``'s lease to now + ``lease_s``; False when it lost the lease."""

    async def recover_expired(self, *, max_attempts: int, now: float | None = None) -> Recovered:
        """Each in-progress response whose lease ended before ``now``: back to ``queued`` (its
        lease and stream events cleared, as the next attempt starts over) while ``attempts`` <
        ``max_attempts``, else ``failed`` with :data:`INTERRUPTED_ERROR`; ``cancelled`` when a
        cancel was requested."""

    # -- stream event log ---------------------------------------------------------------------

    async def append_events(
        self, id: str, events: list[tuple[int, bytes]], *, worker: str | None = None
    ) -> bool:
        """Append ``(sequence_number, event JSON)`` pairs; a number already stored is kept as
        it was (an append may be retried). With ``worker``, only while it holds the lease.
        False: nothing appended (no such response, or the lease is not ``worker``'s)."""

    async def events_after(
        self, id: str, owner: str, after: int, limit: int = 1000
    ) -> list[tuple[int, bytes]]:
        """Events with a sequence number above ``after``, in order; [] when not found."""

    # -- conversations ------------------------------------------------------------------------

    async def create_conversation(
        self,
        id: str,
        owner: str,
        metadata: bytes,
        items: list[tuple[str, bytes]],
        created_at: float,
    ) -> None:
        """Store a new conversation with its first items ``(item_id, item JSON)``, in order."""

    async def get_conversation(self, id: str, owner: str) -> tuple[bytes, float] | None:
        """``(metadata JSON, created_at)``, or None when not found."""

    async def update_conversation(self, id: str, owner: str, metadata: bytes) -> bool: ...

    async def delete_conversation(self, id: str, owner: str) -> bool:
        """Delete a conversation and its items."""

    async def add_items(
        self, conversation_id: str, owner: str, items: list[tuple[str, bytes]]
    ) -> bool:
        """Append items after the conversation's last; False when not found."""

    async def list_items(
        self, conversation_id: str, owner: str, *, after: str | None, limit: int, order: Order
    ) -> ItemPage | None:
        """A page of items after the item ``after`` (an id not in the conversation gives an
        empty page); None when the conversation is not found."""

    async def get_item(self, conversation_id: str, owner: str, item_id: str) -> bytes | None: ...

    async def delete_item(self, conversation_id: str, owner: str, item_id: str) -> bool: ...

    # -- virtual keys and teams (JSON bodies; only a key's hash is stored, never its secret) ---

    async def insert_key(
        self, id: str, hash: str, team: str | None, created_at: float, body: bytes
    ) -> None:
        """Store a new key; ``team`` must exist."""

    async def get_key(self, id: str) -> bytes | None: ...

    async def key_by_hash(self, hash: str) -> bytes | None: ...

    async def list_keys(self, *, team: str | None, after: str | None, limit: int) -> list[bytes]:
        """Keys in the order they were made, after the key ``after``; only ``team``'s if given."""

    async def update_key(
        self, id: str, team: str | None, body: bytes, *, hash: str | None = None
    ) -> bool:
        """Replace a key's record; its secret's hash too when ``hash`` is given (a rotation)."""

    async def delete_key(self, id: str) -> bool: ...

    async def has_keys(self) -> bool: ...

    async def insert_team(self, id: str, created_at: float, body: bytes) -> None: ...

    async def get_team(self, id: str) -> bytes | None: ...

    async def list_teams(self, *, after: str | None, limit: int) -> list[bytes]: ...

    async def update_team(self, id: str, body: bytes) -> bool: ...

    async def delete_team(self, id: str) -> TeamDeletion:
        """Delete a team that no key belongs to (``in_use`` otherwise)."""

    # -- usage records (proxy.store.usage) ----------------------------------------------------

    async def insert_usage(self, records: list[UsageRecord]) -> None:
        """Insert records in one transaction (all or none); ids already stored are skipped, so
        a batch may be sent again after a failure."""

    async def query_usage_records(
        self, filters: UsageFilters, cursor: tuple[float, str] | None, limit: int
    ) -> UsagePage:
        """Up to ``limit`` records matching ``filters``, newest first, older than ``cursor``
        (a previous page's ``next_cursor``)."""

    async def usage_totals(self, group_by: GroupBy, filters: UsageFilters) -> list[UsageTotal]:
        """Requests, errors (status 400 and up), tokens and cost of the records matching
        ``filters``, one row per group, in the group's order."""

    async def delete_usage_before(self, before: float) -> int:
        """Delete the records made before ``before`` (unix seconds); how many went."""


def check_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError(f"a page limit is at least 1, got {limit}")


class _HasId(msgspec.Struct):
    id: str | None = None


_array = msgspec.json.Decoder(list[msgspec.Raw])
_has_id = msgspec.json.Decoder(_HasId)


def page_json_array(array: bytes, *, after: str | None, limit: int, order: Order) -> ItemPage:
    """A page of a JSON array of objects with ``"id"`` members, paged like conversation items."""
    check_limit(limit)
    raws = _array.decode(array)
    ids = [_has_id.decode(raw).id for raw in raws]
    positions = list(range(len(raws)))
    if order == "desc":
        positions.reverse()
    if after is not None:
        at = next((n for n, i in enumerate(positions) if ids[i] == after), None)
        positions = [] if at is None else positions[at + 1 :]
    chosen = positions[:limit]
    return ItemPage(
        items=[bytes(raws[i]) for i in chosen],
        has_more=len(positions) > limit,
        first_id=ids[chosen[0]] if chosen else None,
        last_id=ids[chosen[-1]] if chosen else None,
    )


def make_page(rows: list[tuple[str, bytes]], limit: int) -> ItemPage:
    """A page from up to ``limit + 1`` ``(item_id, item)`` rows fetched in order."""
    chosen = rows[:limit]
    return ItemPage(
        items=[item for _, item in chosen],
        has_more=len(rows) > limit,
        first_id=chosen[0][0] if chosen else None,
        last_id=chosen[-1][0] if chosen else None,
    )


def check_migrations(migrations: tuple[Migration, ...]) -> None:
    """Versions run 1, 2, 3, ... with no gap, so "applied" is a prefix of the list."""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise StoreError(f"migration versions must be 1, 2, 3, ...; got {versions}")


def pending_migrations(migrations: tuple[Migration, ...], applied: set[int]) -> list[Migration]:
    """The steps not applied yet; refuses a database migrated by a newer gateway."""
    check_migrations(migrations)
    known = len(migrations)
    newer = sorted(v for v in applied if v > known)
    if newer:
        raise StoreError(
            f"the database schema is at version {newer[-1]}, newer than this gateway knows "
            f"({known}): upgrade the gateway or point store.url at another database"
        )
    return [m for m in migrations if m.version not in applied]

"""Background jobs (claims, leases, recovery) and the stream event log."""

from __future__ import annotations

import asyncio
import time

from proxy.store import INTERRUPTED_ERROR, Recovered, Store
from tests.store.conftest import Backend
from tests.store.helpers import record


async def test_claim_takes_oldest_queued_background_response(store: Store) -> None:
    """claim_next takes queued background responses oldest first and leaves the rest alone."""
    await store.insert_response(record("late", background=True, created_at=20.0))
    await store.insert_response(record("early", background=True, created_at=10.0))
    await store.insert_response(record("foreground", created_at=1.0))
    await store.insert_response(record("done", background=True, status="completed", created_at=1.0))
    before = time.time()
    first = await store.claim_next("w1", 30)
    assert first is not None
    assert (first.id, first.status, first.lease_owner, first.attempts) == (
        "early",
        "in_progress",
        "w1",
        1,
    )
    assert first.lease_until is not None
    assert before + 30 <= first.lease_until <= time.time() + 30
    assert first.updated_at >= before
    assert await store.get_response("early", "alice") == first
    second = await store.claim_next("w2", 30)
    assert second is not None
    assert (second.id, second.lease_owner) == ("late", "w2")
    assert await store.claim_next("w3", 30) is None


async def test_concurrent_claimers_never_share_a_job(backend: Backend) -> None:
    """20 queued jobs against 4 instances claiming at once: each job is claimed exactly once."""
    stores = [await backend.open() for _ in range(4)]
    for n in range(20):
        await stores[0].insert_response(record(f"job_{n:02}", background=True, created_at=n))

    async def claimer(store: Store, name: str) -> list[str]:
        claimed: list[str] = []
        while (rec := await store.claim_next(name, 30)) is not None:
            assert rec.lease_owner == name
            claimed.append(rec.id)
        return claimed

    results = await asyncio.gather(*(claimer(s, f"w{n}") for n, s in enumerate(stores)))
    every = [job for claimed in results for job in claimed]
    assert sorted(every) == [f"job_{n:02}" for n in range(20)]
    rows = await backend.query("SELECT count(*) FROM responses WHERE attempts = 1")
    assert rows == [(20,)]


async def test_renew_lease_only_for_its_holder(store: Store) -> None:
    """renew_lease extends the holder's lease; another worker, or a lost lease, gets False."""
    await store.insert_response(record("job", background=True))
    claimed = await store.claim_next("w1", 1)
    assert claimed is not None
    assert claimed.lease_until is not None
    assert not await store.renew_lease("job", "w2", 60)
    assert await store.renew_lease("job", "w1", 60)
    renewed = await store.get_response("job", "alice")
    assert renewed is not None
    assert renewed.lease_until is not None
    assert renewed.lease_until >= claimed.lease_until + 58
    await store.recover_expired(max_attempts=3, now=renewed.lease_until + 1)
    assert not await store.renew_lease("job", "w1", 60)
    assert not await store.renew_lease("nope", "w1", 60)


async def test_recover_expired_requeues_fails_or_cancels(store: Store) -> None:
    """Expired leases go back to queued under max_attempts, else fail; a cancel wins."""
    leased = {"status": "in_progress", "background": True, "lease_owner": "w", "lease_until": 10.0}
    await store.insert_response(record("retry", attempts=1, **leased))
    await store.insert_response(record("give_up", attempts=2, **leased))
    await store.insert_response(record("cancel", attempts=1, cancel_requested=True, **leased))
    await store.insert_response(record("alive", attempts=1, **{**leased, "lease_until": 1000.0}))
    await store.insert_response(record("waiting", background=True))
    got = await store.recover_expired(max_attempts=2, now=100.0)
    assert got == Recovered(requeued=["retry"], failed=["give_up"], cancelled=["cancel"])

    states = {}
    for id in ("retry", "give_up", "cancel", "alive", "waiting"):
        rec = await store.get_response(id, "alice")
        assert rec is not None
        states[id] = (rec.status, rec.lease_owner, rec.lease_until, rec.error)
    assert states == {
        "retry": ("queued", None, None, None),
        "give_up": ("failed", None, None, INTERRUPTED_ERROR),
        "cancel": ("cancelled", None, None, None),
        "alive": ("in_progress", "w", 1000.0, None),
        "waiting": ("queued", None, None, None),
    }
    assert await store.recover_expired(max_attempts=2, now=100.0) == Recovered([], [], [])


async def test_requeued_job_starts_over(store: Store) -> None:
    """A requeued job loses its old events, is claimed again with attempts + 1, and its old
    worker's writes no longer apply."""
    await store.insert_response(record("job", background=True))
    first = await store.claim_next("w1", 30)
    assert first is not None
    assert await store.append_events("job", [(0, b"a"), (1, b"b")], worker="w1")
    assert first.lease_until is not None
    assert await store.recover_expired(max_attempts=3, now=first.lease_until + 1) == Recovered(
        ["job"], [], []
    )
    assert await store.events_after("job", "alice", -1) == []
    second = await store.claim_next("w2", 30)
    assert second is not None
    assert (second.id, second.attempts, second.lease_owner) == ("job", 2, "w2")
    assert not await store.update_response("job", status="completed", worker="w1")
    assert not await store.append_events("job", [(2, b"stale")], worker="w1")
    assert await store.append_events("job", [(0, b"fresh")], worker="w2")
    assert await store.events_after("job", "alice", -1) == [(0, b"fresh")]


async def test_events_come_back_in_sequence_order(store: Store) -> None:
    """Events appended out of order in several batches are read back by sequence number."""
    await store.insert_response(record("resp_1"))
    assert await store.append_events("resp_1", [(2, b"c"), (0, b"a")])
    assert await store.append_events("resp_1", [(3, b"d"), (1, b"b")])
    everything = [(0, b"a"), (1, b"b"), (2, b"c"), (3, b"d")]
    assert await store.events_after("resp_1", "alice", -1) == everything
    assert await store.events_after("resp_1", "alice", 1) == everything[2:]
    assert await store.events_after("resp_1", "alice", -1, limit=2) == everything[:2]
    assert await store.events_after("resp_1", "alice", 3) == []


async def test_events_are_scoped_to_owner(store: Store) -> None:
    """Another owner, or an unknown response, reads no events."""
    await store.insert_response(record("resp_1"))
    assert await store.append_events("resp_1", [(0, b"a")])
    assert await store.events_after("resp_1", "bob", -1) == []
    assert await store.events_after("resp_x", "alice", -1) == []


async def test_append_is_idempotent_per_sequence_number(store: Store) -> None:
    """Appending a sequence number again keeps the first event, so a retried append is safe."""
    await store.insert_response(record("resp_1"))
    assert await store.append_events("resp_1", [(0, b"a"), (1, b"b")])
    assert await store.append_events("resp_1", [(1, b"again"), (2, b"c")])
    assert await store.events_after("resp_1", "alice", -1) == [(0, b"a"), (1, b"b"), (2, b"c")]


async def test_append_needs_the_response_and_the_lease(store: Store) -> None:
    """Appending to an unknown response, or without the named lease, appends nothing."""
    assert not await store.append_events("resp_x", [(0, b"a")])
    await store.insert_response(record("resp_1", status="in_progress", lease_owner="w1"))
    assert not await store.append_events("resp_1", [(0, b"a")], worker="w2")
    assert await store.events_after("resp_1", "alice", -1) == []
    assert await store.append_events("resp_1", [], worker="w1")
    assert await store.append_events("resp_1", [(0, b"a")], worker="w1")
    assert await store.events_after("resp_1", "alice", -1) == [(0, b"a")]

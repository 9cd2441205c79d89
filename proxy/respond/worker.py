"""The background worker: runs ``background: true`` responses, durably.

Each gateway instance runs one. It claims queued responses from the store (atomically across
instances) up to ``store.background_concurrency`` at a time, and holds each under a lease it
renews every third of ``store.lease_s``. A renewal also notices a cancel asked of another
instance. A streamed response's events go to the store as they come, and local followers are
woken at once (followers on other instances poll).

What survives a stop: on a clean shutdown each running response's lease is ended at once, so the
next instance to start (or any running one) takes it over; after a crash the lease runs out by
itself. :meth:`Store.recover_expired` puts such a response back in the queue, or fails it once it
has been started ``store.max_attempts`` times. Writes are fenced by the lease: a worker that lost
its lease cannot overwrite the next attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import Mapping

import msgspec
import structlog

from middlewares.fallback import resolve_targets, with_fallbacks
from middlewares.request_context import new_request_id
from providers.registry import Registry
from proxy.config import RouteConfig, StoreConfig
from proxy.errors import GatewayError, UpstreamError
from proxy.governance.service import Governance
from proxy.keys import AttemptState, Directory, Outcome
from proxy.operations import RESPONSES, Target
from proxy.pricing import Pricing
from proxy.reliability import Reliability
from proxy.respond.prepare import Prepared
from proxy.respond.run import Attempt, EventRun, Frame, answer, error_code, own, start_events
from proxy.respond.save import account_of, append_to_conversation, prepared_from_record
from proxy.responses.output import new_response
from proxy.schemas.response_events import ResponseFailed
from proxy.schemas.responses import Response, ResponseError, ResponseStatus
from proxy.store import ResponseRecord, Store, UsageRecord
from proxy.usage import UsageWriter, usage_content

__all__ = ["BackgroundWorker", "Notifier"]

log = structlog.get_logger("thruway.background")
_encode = msgspec.json.Encoder().encode
_RAW = msgspec.json.Decoder(dict[str, msgspec.Raw])


class Notifier:
    """Wakes whoever waits on a response id (followers of a background stream)."""

    def __init__(self) -> None:
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}

    async def wait(self, key: str, timeout: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, []).append(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None and fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    del self._waiters[key]

    def notify(self, key: str) -> None:
        for fut in self._waiters.pop(key, []):
            if not fut.done():
                fut.set_result(None)


class _Job:
    """One claimed response while it runs."""

    def __init__(self, rec: ResponseRecord, worker: str, prep: Prepared) -> None:
        self.rec = rec
        self.worker = worker
        self.prep = prep
        self.run: EventRun | None = None
        self.next_seq = 0
        self.cancel_asked = False

    def snapshot(self, status: ResponseStatus) -> Response:
        if self.run is not None:
            return self.run.snapshot(status)
        return own(
            new_response(
                self.prep.req,
                response_id=self.prep.response_id,
                created_at=self.prep.created_at,
                status=status,
            ),
            self.prep,
        )


class BackgroundWorker:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        directory: Directory,
        config: StoreConfig,
        *,
        reliability: Reliability | None = None,
        routes: Mapping[str, RouteConfig] | None = None,
        usage: UsageWriter | None = None,
        pricing: Pricing | None = None,
        governance: Governance | None = None,
    ) -> None:
        self._usage = usage
        self._governance = governance
        self._pricing = pricing
        self._reliability = reliability
        self._routes = routes
        self._store = store
        self._registry = registry
        self._directory = directory
        self._config = config
        self._instance = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.notifier = Notifier()
        self._jobs: dict[str, tuple[_Job, asyncio.Task[None]]] = {}
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._charging: set[asyncio.Task[None]] = set()

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self._recover()
        self._loop_task = asyncio.create_task(self._poll(), name="thruway-background")

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        tasks = [task for _, task in self._jobs.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._charging:
            await asyncio.gather(*self._charging, return_exceptions=True)

    def wake(self) -> None:
        """New work was queued here: claim it now rather than at the next poll."""
        self._wake.set()

    async def cancel(self, response_id: str, timeout: float = 5.0) -> None:
        """Cancel a response this instance runs, and wait (a little) until it has settled."""
        got = self._jobs.get(response_id)
        if got is None:
            return
        job, task = got
        job.cancel_asked = True
        task.cancel()
        await asyncio.wait([task], timeout=timeout)

    # --- claiming -----------------------------------------------------------------------------

    async def _recover(self) -> None:
        try:
            got = await self._store.recover_expired(max_attempts=self._config.max_attempts)
        except Exception as exc:
            log.error("background_recovery_failed", error_type=type(exc).__name__, error=str(exc))
            return
        if got.requeued or got.failed or got.cancelled:
            log.warning(
                "background_recovered",
                requeued=len(got.requeued),
                failed=len(got.failed),
                cancelled=len(got.cancelled),
            )
            for rid in [*got.failed, *got.cancelled]:
                self.notifier.notify(rid)

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        next_recovery = loop.time() + self._config.lease_s / 2
        while True:
            try:
                while len(self._jobs) < self._config.background_concurrency:
                    worker = f"{self._instance}-{secrets.token_hex(4)}"
                    rec = await self._store.claim_next(worker, self._config.lease_s)
                    if rec is None:
                        break
                    self._start_job(rec, worker)
                if loop.time() >= next_recovery:
                    await self._recover()
                    next_recovery = loop.time() + self._config.lease_s / 2
            except Exception as exc:
                log.error("background_poll_failed", error_type=type(exc).__name__, error=str(exc))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._config.poll_interval_s)

    def _start_job(self, rec: ResponseRecord, worker: str) -> None:
        try:
            prep = prepared_from_record(rec)
        except (msgspec.DecodeError, ValueError) as exc:
            log.error("background_unreadable", response_id=rec.id, error=str(exc))
            prep = None
        job = _Job(rec, worker, prep) if prep is not None else None
        task = asyncio.create_task(self._run(job) if job else self._unreadable(rec, worker))
        if job is not None:
            self._jobs[rec.id] = (job, task)

        def done(_: asyncio.Task[None]) -> None:
            self._jobs.pop(rec.id, None)
            self._wake.set()

        task.add_done_callback(done)

    async def _unreadable(self, rec: ResponseRecord, worker: str) -> None:
        error = ResponseError(
            code="server_error", message="The stored request could not be read back."
        )
        await self._store.update_response(
            rec.id,
            status="failed",
            error=_encode(error),
            lease_owner=None,
            lease_until=None,
            worker=worker,
        )

    # --- running ------------------------------------------------------------------------------

    async def _run(self, job: _Job) -> None:
        rid = job.rec.id
        task = asyncio.current_task()
        assert task is not None
        keeper = asyncio.create_task(self._keep_lease(job, task))
        outcome = Outcome(model_requested=job.prep.req.model, stream=job.rec.stream)
        started = time.time()
        final: Response | None = None
        # What the run's usage record says: interrupted unless it ends otherwise.
        status: int = 503
        error_type: str | None = "gateway_shutdown"
        released = False
        try:
            final = await self._attempts(job, outcome)
            status, error_type = 200, None
            await self._finish(job, final)
        except asyncio.CancelledError:
            if job.cancel_asked:
                status, error_type = 499, "cancelled"
                final = job.snapshot("cancelled")
                await asyncio.shield(self._finish(job, final))
            else:
                # Shutting down, or the lease was lost: whoever holds the work next runs it.
                released = True
                await asyncio.shield(self._release(job))
            raise
        except GatewayError as exc:
            status, error_type = exc.status, exc.type
            final = job.snapshot("failed")
            final.error = ResponseError(code=error_code(exc), message=exc.message)
            await self._fail(job, final)
        except Exception as exc:
            status, error_type = 500, "internal_error"
            log.error(
                "background_failed", response_id=rid, error_type=type(exc).__name__, error=str(exc)
            )
            final = job.snapshot("failed")
            final.error = ResponseError(
                code="server_error", message="The gateway failed while running the response."
            )
            await self._fail(job, final)
        finally:
            keeper.cancel()
            self._log(job, outcome, final)
            cost = self._cost(outcome)
            account = account_of(job.rec)
            if self._usage is not None:
                record = self._record(job, outcome, final, started, status, error_type)
                self._usage.submit(
                    msgspec.structs.replace(
                        record,
                        cost_usd=cost,
                        key_id=account.key_id if account else None,
                        team_id=account.team_id if account else None,
                    )
                )
            if not released and account is not None and account.key_id is not None:
                self._charge(account.key_id, account.request_id, cost or 0.0)

    async def _attempts(self, job: _Job, outcome: Outcome) -> Response:
        prep = job.prep
        fallbacks = prep.req.fallbacks if isinstance(prep.req.fallbacks, list) else []
        targets = resolve_targets(
            prep.req.model, fallbacks, self._directory, self._routes, self._reliability
        )
        ask = Attempt(request_id=f"bg-{job.rec.id}-{job.rec.attempts}", client_headers={})

        async def attempt(target: Target, state: AttemptState) -> Response:
            provider = self._registry[target.provider]
            this = ask._replace(state=state)
            if not job.rec.stream:
                got = await answer(provider, prep, target, this)
                outcome.usage = got.usage
                return got.response
            return await self._stream(job, target, this, outcome)

        return await with_fallbacks(
            targets, self._directory, outcome, attempt, reliability=self._reliability
        )

    async def _stream(self, job: _Job, target: Target, ask: Attempt, outcome: Outcome) -> Response:
        # A failure before the first batch lets the next target try.
        run, batch = await start_events(self._registry[target.provider], job.prep, target, ask)
        job.run = run
        try:
            while batch is not None:
                await self._append(job, batch)
                try:
                    batch = await run.next()
                except GatewayError as exc:
                    await self._append(job, run.fail(exc))
                    break
            if run.final is None:
                cut = UpstreamError(
                    "The upstream ended the stream before the response was complete.",
                    status=502,
                    provider=target.provider,
                )
                await self._append(job, run.fail(cut))
        finally:
            await run.aclose()
            outcome.usage = run.usage
        assert run.final is not None
        return run.final

    async def _append(self, job: _Job, frames: list[Frame]) -> None:
        if not frames:
            return
        await self._store.append_events(
            job.rec.id, [(seq, data) for seq, _, data in frames], worker=job.worker
        )
        job.next_seq = frames[-1][0] + 1
        self.notifier.notify(job.rec.id)

    async def _finish(self, job: _Job, final: Response) -> None:
        await self._store.update_response(
            job.rec.id,
            status=final.status,
            response=_encode(final),
            error=_encode(final.error) if final.error is not None else None,
            lease_owner=None,
            lease_until=None,
            worker=job.worker,
        )
        await append_to_conversation(self._store, job.prep, final)
        self.notifier.notify(job.rec.id)

    async def _fail(self, job: _Job, final: Response) -> None:
        if job.rec.stream:
            # Followers of the stream learn it from the stream itself.
            event = ResponseFailed(sequence_number=job.next_seq, response=final)
            with contextlib.suppress(Exception):
                await self._append(job, [Frame(job.next_seq, "response.failed", _encode(event))])
        await self._finish(job, final)

    async def _release(self, job: _Job) -> None:
        """End the lease now, so that recovery hands the response on without waiting."""
        with contextlib.suppress(Exception):
            await self._store.update_response(
                job.rec.id, lease_until=time.time() - 1, worker=job.worker
            )

    async def _keep_lease(self, job: _Job, task: asyncio.Task[None]) -> None:
        every = self._config.lease_s / 3
        while True:
            await asyncio.sleep(every)
            try:
                if not await self._store.renew_lease(job.rec.id, job.worker, self._config.lease_s):
                    log.warning("background_lease_lost", response_id=job.rec.id)
                    task.cancel()
                    return
                rec = await self._store.get_response(job.rec.id, job.rec.owner)
            except Exception as exc:
                log.error(
                    "background_renewal_failed", error_type=type(exc).__name__, error=str(exc)
                )
                continue
            if rec is None or rec.cancel_requested:
                job.cancel_asked = rec is not None
                task.cancel()
                return

    def _cost(self, outcome: Outcome) -> float | None:
        billed = outcome.usage
        if billed is None or not outcome.provider or self._pricing is None:
            return None
        return self._pricing.cost_usd(outcome.provider, outcome.model, billed)

    def _charge(self, key_id: str, request_id: str, cost: float) -> None:
        """The key's budget reservation (held since the response was queued) becomes the
        run's cost; in a task of its own, as the run may be being cancelled."""
        assert self._governance is not None
        task = asyncio.get_running_loop().create_task(
            self._governance.charge(key_id, request_id, cost)
        )
        self._charging.add(task)
        task.add_done_callback(self._charging.discard)

    def _record(
        self,
        job: _Job,
        outcome: Outcome,
        final: Response | None,
        started: float,
        status: int,
        error_type: str | None,
    ) -> UsageRecord:
        """The usage record of one run (each run of a response that is retried after an
        interruption is one record: each called the upstream). The request id is the one the
        run sent upstream, ``bg-<response id>-<run>``; cost and key are filled in by the
        caller."""
        billed = outcome.usage
        content = None
        if self._usage is not None and self._usage.log_content:
            fields = {
                k: v for k, v in _RAW.decode(job.prep.body).items() if k in RESPONSES.content_fields
            }
            content = usage_content(fields, _encode(final) if final is not None else None)
        return UsageRecord(
            id=new_request_id(),
            created_at=started,
            request_id=f"bg-{job.rec.id}-{job.rec.attempts}",
            provider=outcome.provider or None,
            model=outcome.model or None,
            model_requested=job.prep.req.model,
            route="/v1/responses",
            request_type="background_response",
            status=status,
            error_type=error_type,
            input_tokens=billed.prompt_tokens if billed is not None else 0,
            output_tokens=billed.completion_tokens if billed is not None else 0,
            cached_tokens=billed.cached_tokens if billed is not None else 0,
            reasoning_tokens=billed.reasoning_tokens if billed is not None else 0,
            latency_ms=outcome.elapsed_ms(),
            attempts=outcome.attempts,
            fallback_index=outcome.fallback_index,
            stream=job.rec.stream,
            content=content,
        )

    def _log(self, job: _Job, outcome: Outcome, final: Response | None) -> None:
        fields: dict[str, object] = {
            "response_id": job.rec.id,
            "status": final.status if final is not None else "interrupted",
            "provider": outcome.provider,
            "model": outcome.model,
            "attempts": outcome.attempts,
            "run": job.rec.attempts,
        }
        if outcome.usage is not None:
            fields["input_tokens"] = outcome.usage.prompt_tokens
            fields["output_tokens"] = outcome.usage.completion_tokens
        if outcome.failures:
            fields["failures"] = outcome.failures
        log.info("background_response", **fields)

"""``Client`` methods for talking to running orchestrations (docs/messaging.md): updates,
key-value state, FIFO queue events and progress streams. A mixin of :class:`Client`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import anyio

from durable_redis import core, ids
from durable_redis.core import Codec
from durable_redis.errors import (
    FailureDetails,
    InstanceNotFoundError,
    UpdateFailedError,
    UpdateRejectedError,
    WaitTimeoutError,
)
from durable_redis.ids import validate_id
from durable_redis.storage.base import Store

__all__ = ["ClientMessagingMixin", "StreamItem", "follow_stream"]

_POLL_START_S = 0.005
_POLL_MAX_S = 0.25
_FOLLOW_BLOCK_MS = 1000


@dataclass(frozen=True, slots=True)
class StreamItem:
    """One entry of an instance's progress stream: pass ``offset`` back as ``from_offset``."""

    offset: str
    value: Any


class ClientMessagingMixin:
    """Updates, values, queue events and streams; see :class:`durable_redis.Client`."""

    store: Store
    codec: Codec

    async def _ensure_initialized(self) -> None:  # pragma: no cover - Client's
        raise NotImplementedError

    def _id(self, value: object, what: str = "instance id") -> str:

        return validate_id(value, what)

    async def update(
        self,
        instance_id: str,
        name: str,
        arg: Any = None,
        *,
        update_id: str | None = None,
        timeout: float | timedelta | None = None,
        result_type: Any = None,
    ) -> Any:
        """Run the orchestration's update handler ``name`` on ``arg`` and return its result.

        Pass the same ``update_id`` when retrying a call: the update is applied once and every
        call gets its one answer. Raises UpdateRejectedError (the validator refused it, or no
        handler has that name: nothing was recorded), UpdateFailedError (the handler raised, or
        the instance ended first), InstanceTerminalError (it had already ended),
        InstanceNotFoundError, WaitTimeoutError (the update may still be applied later).
        """
        self._id(instance_id)
        self._id(name, "update name")
        uid = self._id(update_id, "update id") if update_id is not None else uuid.uuid4().hex
        await self._ensure_initialized()
        reply = await self.store.get_update_reply(instance_id, uid)
        if reply is None:
            message = core.encode_message(
                core.UpdateRequested(update_id=uid, name=name, input=self.codec.encode(arg))
            )
            await self.store.enqueue_message(
                instance_id, ids.client_message_id("update", uid), message
            )
            reply = await self._wait_reply(instance_id, uid, timeout)
        answer = core.decode_reply(reply)
        if answer.failure is not None:
            cls = UpdateRejectedError if answer.failure.kind == "rejected" else UpdateFailedError
            raise cls(instance_id, name, answer.failure)
        if answer.result is None:
            return None
        if result_type is not None:
            return self.codec.decode(answer.result, result_type)
        return self.codec.decode(answer.result)

    async def _wait_reply(
        self, instance_id: str, update_id: str, timeout: float | timedelta | None
    ) -> bytes:
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        deadline = None if seconds is None else anyio.current_time() + seconds
        # woken by the instance's signal (a turn recorded a reply, or it ended): as
        # Client.wait_for_state, a re-read every second, polling where none comes
        async with self.store.instance_signals(instance_id) as signal:
            delay = _POLL_START_S
            while True:
                reply = await self.store.get_update_reply(instance_id, update_id)
                if reply is not None:
                    return reply
                info = await self.store.get_instance(instance_id)
                if info is None:
                    raise InstanceNotFoundError(f"no instance {instance_id!r}")
                if info.status.is_terminal:  # it may have answered just before ending
                    reply = await self.store.get_update_reply(instance_id, update_id)
                    if reply is not None:
                        return reply
                    return core.encode_reply(
                        core.UpdateReply(
                            failure=FailureDetails(
                                "application",
                                "InstanceEndedError",
                                f"the instance ended ({info.status.value}) before answering",
                            )
                        )
                    )
                if not await signal.pause(delay, deadline):
                    raise WaitTimeoutError(
                        f"no answer to update {update_id!r} of {instance_id!r} after {seconds}s"
                    )
                delay = min(delay * 1.5, _POLL_MAX_S)

    async def get_value(
        self, instance_id: str, key: str, default: Any = None, *, result_type: Any = None
    ) -> Any:
        """Key ``key`` of the instance's key-value state (``ctx.set_value``), read without a
        turn; ``default`` when it is not set."""
        self._id(instance_id)
        await self._ensure_initialized()
        found = await self.store.get_values(instance_id, [key])
        if key not in found:
            return default
        if result_type is not None:
            return self.codec.decode(found[key], result_type)
        return self.codec.decode(found[key])

    async def get_values(self, instance_id: str) -> dict[str, Any]:
        """Every key of the instance's key-value state, decoded."""
        self._id(instance_id)
        await self._ensure_initialized()
        found = await self.store.get_values(instance_id)
        return {k: self.codec.decode(v) for k, v in sorted(found.items())}

    async def enqueue_event(self, instance_id: str, queue: str, data: Any = None) -> None:
        """Add an event to the instance's persistent FIFO queue ``queue``; the orchestration
        takes each once, in order, with ``await ctx.dequeue_event(queue)``. Raises
        InstanceNotFoundError / InstanceTerminalError like ``raise_event``."""
        self._id(instance_id)
        self._id(queue, "queue name")
        message = core.encode_message(
            core.QueueEventRaised(queue=queue, data=self.codec.encode(data))
        )
        await self._ensure_initialized()
        await self.store.enqueue_message(
            instance_id, ids.client_message_id("queue", uuid.uuid4().hex), message
        )

    async def stream(
        self,
        instance_id: str,
        *,
        from_offset: str = "0",
        follow: bool = True,
        result_type: Any = None,
    ) -> AsyncIterator[StreamItem]:
        """The instance's progress stream after ``from_offset`` ("0": from the start).

        With ``follow`` (the default) it waits for new items and ends once the instance has
        ended and everything is read; without, it ends at the current end.
        """
        self._id(instance_id)
        await self._ensure_initialized()
        async for row in follow_stream(self.store, instance_id, from_offset, follow=follow):
            if row is None:
                continue
            offset, data = row
            value = (
                self.codec.decode(data, result_type)
                if result_type is not None
                else self.codec.decode(data)
            )
            yield StreamItem(offset, value)


async def follow_stream(
    store: Store, instance_id: str, from_offset: str = "0", *, follow: bool = True
) -> AsyncIterator[tuple[str, bytes] | None]:
    """The raw entries ``(offset, data)`` of an instance's progress stream after
    ``from_offset``; with ``follow``, None after each wait (about a second) that brought nothing
    (the dashboard's SSE keep-alive), ending once the instance has ended, or is gone, and
    everything is read."""
    after = from_offset or "0"
    while True:
        rows = await store.read_stream(instance_id, after=after, count=100)
        for offset, data in rows:
            after = offset
            yield offset, data
        if rows:
            continue
        if not follow:
            return
        info = await store.get_instance(instance_id)
        if info is None or info.status.is_terminal:
            if not await store.read_stream(instance_id, after=after, count=1):
                return
            continue
        if not await store.read_stream(
            instance_id, after=after, count=1, block_ms=_FOLLOW_BLOCK_MS
        ):
            yield None

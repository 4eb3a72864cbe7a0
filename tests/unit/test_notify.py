"""Long-poll wake-ups: only the waiters that could claim a task are woken."""

from __future__ import annotations

import asyncio

from morag_worker.server.notify import Interest, Notifier, _decode


class _SQLite:
    dialect = "sqlite"


async def _woken(notifier: Notifier, interest: Interest, timeout_s: float = 0.3) -> bool:
    loop = asyncio.get_running_loop()
    started = loop.time()
    await notifier.wait(notifier.version, timeout_s, interest)
    return loop.time() - started < timeout_s * 0.9


def test_a_task_wakes_only_the_waiters_that_could_claim_it() -> None:
    async def scenario() -> dict[str, bool]:
        notifier = Notifier(_SQLite())  # type: ignore[arg-type]
        waiters = {
            "alice-audio": Interest(frozenset({"audio"}), "alice"),
            "alice-docs": Interest(frozenset({"document"}), "alice"),
            "bob-audio": Interest(frozenset({"audio"}), "bob"),
            "pool-audio": Interest(frozenset({"audio", "video"}), None),
        }
        tasks = {n: asyncio.create_task(_woken(notifier, i)) for n, i in waiters.items()}
        await asyncio.sleep(0.01)
        assert notifier.waiting == 4
        await notifier.notify("audio", "alice")
        results = {n: await t for n, t in tasks.items()}
        assert notifier.waiting == 0
        return results

    assert asyncio.run(scenario()) == {
        "alice-audio": True,
        "alice-docs": False,
        "bob-audio": False,
        "pool-audio": True,
    }


def test_a_notification_without_a_task_wakes_everyone() -> None:
    async def scenario() -> list[bool]:
        notifier = Notifier(_SQLite())  # type: ignore[arg-type]
        interests = [Interest(frozenset({"audio"}), "a"), Interest(frozenset({"web"}), None)]
        tasks = [asyncio.create_task(_woken(notifier, i)) for i in interests]
        await asyncio.sleep(0.01)
        await notifier.notify()
        return [await t for t in tasks]

    assert asyncio.run(scenario()) == [True, True]


def test_notify_payloads_from_other_replicas_are_read_safely() -> None:
    assert _decode('["audio", "alice"]') == ("audio", "alice")
    assert _decode("") == (None, None)
    assert _decode("not json") == (None, None)  # unreadable: wake everyone
    assert _decode("[1, 2]") == (None, None)

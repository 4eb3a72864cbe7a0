"""Long-poll wake-ups: a task wakes one waiter that could claim it, never another."""

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


def test_a_task_wakes_one_waiter_that_could_claim_it_the_longest_waiting() -> None:
    async def scenario() -> dict[str, bool]:
        notifier = Notifier(_SQLite())  # type: ignore[arg-type]
        waiters = {
            "alice-docs": Interest(frozenset({"document"}), "alice"),
            "bob-audio": Interest(frozenset({"audio"}), "bob"),
            "pool-audio": Interest(frozenset({"audio", "video"}), None),
            "alice-audio": Interest(frozenset({"audio"}), "alice"),
        }
        tasks = {}
        for name, interest in waiters.items():
            tasks[name] = asyncio.create_task(_woken(notifier, interest))
            await asyncio.sleep(0.01)  # in this order
        assert notifier.waiting == 4
        await notifier.notify("audio", "alice")
        results = {n: await t for n, t in tasks.items()}
        assert notifier.waiting == 0
        return results

    # The pool worker waited longest of the two that could take it; nobody else wakes.
    assert asyncio.run(scenario()) == {
        "alice-docs": False,
        "bob-audio": False,
        "pool-audio": True,
        "alice-audio": False,
    }


def test_each_task_wakes_another_waiter() -> None:
    async def scenario() -> list[bool]:
        notifier = Notifier(_SQLite())  # type: ignore[arg-type]
        interest = Interest(frozenset({"audio"}), "alice")
        tasks = [asyncio.create_task(_woken(notifier, interest)) for _ in range(3)]
        await asyncio.sleep(0.01)
        await notifier.notify("audio", "alice")
        await notifier.notify("audio", "alice")
        return [await t for t in tasks]

    assert sorted(asyncio.run(scenario())) == [False, True, True]


def test_a_woken_waiter_that_leaves_passes_the_task_on() -> None:
    async def scenario() -> tuple[object, bool]:
        notifier = Notifier(_SQLite())  # type: ignore[arg-type]
        interest = Interest(frozenset({"audio"}), "alice")
        first = asyncio.create_task(notifier.wait(notifier.version, 5, interest))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(_woken(notifier, interest))
        await asyncio.sleep(0.01)
        await notifier.notify("audio", "alice")
        woken_for = await first  # its client went away: it claims nothing
        notifier.pass_on(woken_for)
        return woken_for, await second

    assert asyncio.run(scenario()) == (("audio", "alice"), True)


def test_a_woken_waiter_cancelled_before_it_claims_passes_the_task_on() -> None:
    async def scenario() -> tuple[object, bool]:
        notifier = Notifier(_SQLite())  # type: ignore[arg-type]
        interest = Interest(frozenset({"audio"}), "alice")
        first = asyncio.create_task(notifier.wait(notifier.version, 5, interest))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(_woken(notifier, interest, timeout_s=0.5))
        await asyncio.sleep(0.01)
        notifier.notify_local("audio", "alice")
        first.cancel()  # woken, but cancelled before it ran
        (outcome,) = await asyncio.gather(first, return_exceptions=True)
        return outcome, await second

    outcome, second_woke = asyncio.run(scenario())
    if isinstance(outcome, asyncio.CancelledError):
        assert second_woke  # the task went to the next waiter
    else:
        # Python 3.11's wait_for lets a wake that raced the cancel win: the first
        # waiter returns the task and its caller claims it; nobody else is woken.
        assert outcome == ("audio", "alice") and not second_woke


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

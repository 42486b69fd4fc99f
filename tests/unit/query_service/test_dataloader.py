import asyncio

import pytest

from query_service.loading.dataloader import DataLoader


async def test_loads_in_one_tick_are_one_batch():
    calls = []

    async def batch(keys):
        calls.append(list(keys))
        return {k: k * 2 for k in keys}

    loader = DataLoader(batch)
    values = await asyncio.gather(*(loader.load(i) for i in range(50)), loader.load(3))
    assert values == [i * 2 for i in range(50)] + [6]
    assert calls == [list(range(50))]


async def test_tasks_started_together_share_a_batch():
    calls = []

    async def batch(keys):
        calls.append(sorted(keys))
        return {k: str(k) for k in keys}

    loader = DataLoader(batch)

    async def user(k):
        return await loader.load(k)

    assert await asyncio.gather(*(user(k) for k in range(10))) == [str(k) for k in range(10)]
    assert len(calls) == 1


async def test_batch_size_cap_and_memo():
    calls = []

    async def batch(keys):
        calls.append(len(keys))
        return {k: k for k in keys}

    loader = DataLoader(batch, max_batch_size=4)
    await loader.load_many(range(10))
    assert calls == [4, 4, 2]
    await loader.load_many(range(10))  # memoised within the request
    assert calls == [4, 4, 2]


async def test_missing_key_is_none_and_errors_reach_every_waiter():
    async def batch(keys):
        if 99 in keys:
            raise RuntimeError("boom")
        return {}

    loader = DataLoader(batch)
    assert await loader.load(1) is None
    with pytest.raises(RuntimeError):
        await asyncio.gather(loader.load(99), loader.load(98))

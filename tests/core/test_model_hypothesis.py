"""Random operation sequences against a plain Python model, with reopens (hypothesis)."""
from __future__ import annotations

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spacecorestore import Spacecore
from spacecorestore.crypto import key_pair
from spacecorestore.storage import MemoryStorage

KP = key_pair(bytes(range(32)))
block = st.binary(max_size=300)
op = st.one_of(
    st.tuples(st.just("append"), block),
    st.tuples(st.just("batch"), st.lists(block, max_size=8)),
    st.tuples(st.just("truncate"), st.integers(0, 40)),
    st.tuples(st.just("clear"), st.integers(0, 40), st.integers(1, 5)),
    st.tuples(st.just("user"), st.sampled_from(["a", "b"]), st.one_of(st.none(), st.binary(max_size=5))),
    st.tuples(st.just("reopen")),
)


async def check(core, model, present, user):
    assert core.length == len(model)
    assert core.byte_length == sum(len(b) for b in model)
    contiguous = 0
    while contiguous < len(model) and present[contiguous]:
        contiguous += 1
    assert core.contiguous_length == contiguous
    for i, b in enumerate(model):
        got = await core.get(i, wait=False)
        assert got == (b if present[i] else None), i
    for k, v in user.items():
        assert await core.get_user_data(k) == v


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, max_size=25))
def test_random_operations_match_the_model(ops):
    async def main():
        storage = MemoryStorage()
        core = Spacecore(storage, key_pair=KP)
        await core.ready()
        model: list[bytes] = []
        present: list[bool] = []
        user: dict[str, bytes | None] = {}
        fork = 0
        for o in ops:
            kind = o[0]
            if kind == "append":
                await core.append(o[1])
                model.append(o[1])
                present.append(True)
            elif kind == "batch":
                await core.append(list(o[1]))
                model.extend(o[1])
                present.extend([True] * len(o[1]))
            elif kind == "truncate":
                n = min(o[1], len(model))
                await core.truncate(n)
                fork += 1
                del model[n:], present[n:]
            elif kind == "clear":
                s, e = o[1], o[1] + o[2]
                await core.clear(s, e)
                for i in range(s, min(e, len(model))):
                    present[i] = False
            elif kind == "user":
                await core.set_user_data(o[1], o[2])
                user[o[1]] = o[2] or None
            else:
                await core.close()
                core = Spacecore(storage, key_pair=KP)
                await core.ready()
            assert core.fork == fork
            await check(core, model, present, user)
        await core.close()
        core = Spacecore(storage, key_pair=KP)
        await core.ready()
        await check(core, model, present, user)
        await core.close()

    trio.run(main)

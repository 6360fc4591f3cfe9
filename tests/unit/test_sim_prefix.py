"""The simulator's prefix cache: chained block hashes, the LRU, and what a replica's steps make of them."""

from __future__ import annotations

import pytest

from loadtest.errors import ConfigError
from loadtest.model.roofline import Deployment, kv_capacity_tokens, prefill_s
from loadtest.model.serving import ServingConfig
from loadtest.sim import prefix
from loadtest.sim.batching import BatchRequest, Cluster, Replica
from loadtest.sim.config import SimConfig
from loadtest.sim.http11 import HttpError
from loadtest.sim.prefix import BLOCK_SIZE, PrefixCache, block_hashes
from loadtest.sim.responses import parse_generation
from loadtest.sim.tokens import TokenRule, chat_prompt_pieces

H100_8B = Deployment.of("llama-3.1-8b", "h100")


def words(n: int, start: int = 0) -> list[str]:
    return [f"w{i}" for i in range(start, start + n)]


def test_public_surface() -> None:
    assert prefix.__all__ == ["BLOCK_SIZE", "Continuation", "PrefixCache", "block_hashes"]
    assert BLOCK_SIZE == 16


def test_blocks_are_full_and_chained() -> None:
    a = block_hashes(words(40), 40)
    assert len(a) == 2  # 40 tokens: two full blocks; the partial third is not hashed
    assert block_hashes(words(47), 47)[:2] == a and len(block_hashes(words(48), 48)) == 3
    assert block_hashes(words(15), 15) == ()
    # the same 16 tokens after another prefix are another block: a hash covers the whole prefix
    other = words(16, 100) + words(16, 16)
    assert block_hashes(other, 32)[1] != a[1]
    # a change in block 0 changes every later hash; a change in block 1 leaves block 0's
    changed = ["x", *words(31, 1)]
    assert all(x != y for x, y in zip(block_hashes(changed, 32), a, strict=True))
    late = [*words(16), "x", *words(15, 17)]
    assert block_hashes(late, 32)[0] == a[0] and block_hashes(late, 32)[1] != a[1]
    # token ids hash as themselves: a completions prompt of ids is not the text of its digits
    assert block_hashes(list(range(16)), 16) != block_hashes([str(i) for i in range(16)], 16)


def test_template_tokens_follow_the_content_and_scaled_words_map_to_pieces() -> None:
    content = words(20)
    with_template = block_hashes(content, 20, template_tokens=12)
    assert len(with_template) == 2 and with_template[0] == block_hashes(content, 20)[0]
    assert with_template[1] != block_hashes(words(32), 32)[1]  # 4 words + 12 template tokens
    # 1.6 tokens a word: block j covers words [10j, 10j + 10)
    scaled = block_hashes(words(30), 48, tokens_per_word=1.6)
    assert len(scaled) == 3
    assert scaled[:2] == block_hashes([*words(20), "x", *words(9, 21)], 48, tokens_per_word=1.6)[:2]


def test_chat_pieces_carry_the_role_on_each_messages_first_piece() -> None:
    messages = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": [{"text": "Hi, you"}]},
    ]
    assert chat_prompt_pieces(messages) == ["system\x00Be", "terse", ".", "user\x00Hi", ",", "you"]
    as_assistant = [messages[0], {"role": "assistant", "content": "Hi, you"}]
    assert chat_prompt_pieces(as_assistant)[3] == "assistant\x00Hi"
    with pytest.raises(ValueError, match="non-empty array"):
        chat_prompt_pieces([])


def test_lookup_counts_leading_blocks_and_never_the_whole_prompt() -> None:
    cache = PrefixCache(100)
    blocks = block_hashes(words(64), 64)
    assert cache.lookup(blocks, 64) == 0
    cache.insert(blocks[:2])
    assert cache.lookup(blocks, 64) == 32
    cache.insert(blocks)
    assert (
        cache.lookup(blocks, 64) == 48
    )  # all four held, but the last token is always computed: ⌊63/16⌋ blocks
    assert cache.lookup(blocks, 65) == 64  # one more token: all four blocks
    gap = PrefixCache(100)
    gap.insert([blocks[0], blocks[2]])
    assert gap.lookup(blocks, 64) == 16  # leading blocks only: the run stops at the first miss
    assert (cache.queries, cache.hits) == (64 * 3 + 65, 32 + 48 + 64)


def test_lru_evicts_the_least_recently_used_deepest_block_first() -> None:
    cache = PrefixCache(5)
    a = block_hashes(words(48), 48)  # 3 blocks
    b = block_hashes(words(32, 500), 32)  # 2 blocks
    cache.insert(a)
    cache.insert(b)
    assert len(cache) == 5
    cache.insert(a)  # touch a: b is now the least recently used
    c = block_hashes(words(16, 900), 16)
    cache.insert(c)
    assert len(cache) == 5 and b[1] not in cache and b[0] in cache  # b's deeper block went first
    assert cache.lookup(b, 33) == 16
    cache.insert(block_hashes(words(32, 700), 32))
    # order was b0, a2, a1, a0, c0 (lookups do not touch): two more blocks push out b0, then a's deepest
    assert (
        b[0] not in cache
        and a[2] not in cache
        and {a[0], a[1], c[0]} <= {h for h in (*a, *b, *c) if h in cache}
    )
    with pytest.raises(ValueError, match="at least one block"):
        PrefixCache(0)


def test_a_replica_prefills_only_the_uncached_tokens_and_inserts_after_the_prefill() -> None:
    replica = Replica(H100_8B)
    assert replica.prefix is not None and replica.prefix.capacity == kv_capacity_tokens(H100_8B) // 16  # type: ignore[operator]
    turn1 = block_hashes(words(100), 100)
    turn2 = block_hashes(words(180), 180)
    replica.submit(BatchRequest(1, 100, 1, turn1))
    replica.submit(BatchRequest(2, 180, 1, turn2))  # same step: turn 1's blocks are not in yet
    plan = replica.next_step()
    assert plan is not None and plan.cached == (0, 0) and plan.prefill_tokens == 280
    replica.finish_step()
    replica.submit(BatchRequest(3, 180, 1, turn2))
    plan = replica.next_step()
    assert plan is not None and plan.cached == (176,) and plan.prefill_tokens == 4
    assert plan.duration_s == H100_8B.c0_s + prefill_s(H100_8B, 180, 176)
    assert prefill_s(H100_8B, 180) - prefill_s(H100_8B, 180, 176) == pytest.approx(prefill_s(H100_8B, 176))
    replica.finish_step()
    assert replica.kv_used == 0  # KV is reserved and freed as before: prompt + output, cached or not


def test_prefix_cache_size_off_and_per_replica() -> None:
    assert Replica(H100_8B, prefix_cache_tokens=0).prefix is None
    assert Replica(H100_8B, prefix_cache_tokens=40).prefix.capacity == 2  # type: ignore[union-attr]
    assert Replica(Deployment.of("gte-large", "h100")).prefix is None  # no KV cache, no prefix cache
    cluster = Cluster(ServingConfig(H100_8B, replicas=2))
    blocks = block_hashes(words(64), 64)
    home = cluster.submit_all([BatchRequest(1, 64, 4, blocks)])
    cluster.submit_all([BatchRequest(2, 64, 4, blocks)])  # least outstanding: the other replica
    plans = [cluster.replicas[i].next_step() for i in (0, 1)]
    assert home == 0 and [p.cached for p in plans if p is not None] == [(0,), (0,)]
    for r in cluster.replicas:
        r.finish_step()
    cluster.replicas[1].submit(BatchRequest(3, 64, 1, blocks))
    plan = cluster.replicas[1].next_step()
    assert plan is not None and plan.cached == (48,)
    assert cluster.prefix_stats() == {
        "block_size": 16,
        "capacity_blocks": 2 * (kv_capacity_tokens(H100_8B) or 0) // 16,
        "blocks": 8,
        "queries": 3 * 64,
        "hits": 48,
    }
    assert Cluster(ServingConfig(H100_8B, prefix_cache_tokens=0)).prefix_stats() is None


def test_parse_generation_hashes_the_prompt_only_when_asked() -> None:
    turn1 = [{"role": "user", "content": " ".join(words(40))}]
    turn2 = [*turn1, {"role": "assistant", "content": "a b c"}, {"role": "user", "content": "more"}]
    one = parse_generation({"messages": turn1}, True, 8192, prefix_cache=True)
    two = parse_generation({"messages": turn2}, True, 8192, prefix_cache=True)
    assert (one.prompt_tokens, two.prompt_tokens) == (40, 44)
    assert one.blocks is not None and two.blocks is not None and two.blocks[:2] == one.blocks
    assert parse_generation({"messages": turn1}, True, 8192).blocks is None
    rule = TokenRule(1.0, template_tokens=10)
    templated = parse_generation({"messages": turn1}, True, 8192, rule=rule, prefix_cache=True)
    assert templated.prompt_tokens == 50 and templated.blocks is not None and len(templated.blocks) == 3
    ids = parse_generation({"prompt": list(range(40))}, False, 8192, prefix_cache=True)
    text = parse_generation({"prompt": [" ".join(words(40))]}, False, 8192, prefix_cache=True)
    assert ids.blocks is not None and len(ids.blocks) == 2
    plain = parse_generation({"prompt": " ".join(words(40))}, False, 8192, prefix_cache=True)
    assert plain.blocks == text.blocks
    assert text.blocks is not None and text.blocks != one.blocks  # no role on a completions prompt
    with pytest.raises(HttpError, match="non-empty array"):
        parse_generation({"messages": []}, True, 8192, prefix_cache=True)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"prefix_cache_tokens": -1}, "prefix_cache_tokens must be an integer >= 0"),
        ({"prefix_cache_tokens": 8}, "must be 0 (off) or at least 16 (one block), got 8"),
        (
            {"prefix_cache_tokens": 64, "slots": 2, "prefill_ms": 1.0, "tpot_ms": 1.0},
            "fixed-slots model has no",
        ),
    ],
)
def test_settings_are_checked_in_one_line(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        SimConfig(**settings)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    assert SimConfig(prefix_cache_tokens=0).serving_config().prefix_cache_tokens == 0
    assert SimConfig(slots=2, prefill_ms=1.0, tpot_ms=1.0, prefix_cache_tokens=0).slots == 2

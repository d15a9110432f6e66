"""A deterministic technical vocabulary, Zipf-weighted, that the synthetic corpus and its queries share."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

# Hand-picked roots make the text look like engineering docs; the generated names and compounds
# below stretch them to a few thousand terms so BM25 sees a realistic spread of rare and common words.
_NOUNS_TEXT = """
cache shard replica token index queue broker lease quorum tenant schema snapshot checkpoint ledger
partition segment cursor batch buffer pipeline worker scheduler daemon gateway proxy router endpoint
webhook payload header session cookie credential secret keyring certificate cipher digest signature
nonce timestamp offset watermark backlog throughput latency budget deadline timeout retry backoff
breaker fallback leader follower election consensus heartbeat membership topology region zone cluster
node container image registry manifest artifact bundle module plugin extension hook callback handler
middleware filter reducer mapper parser lexer tokenizer encoder decoder serializer codec compressor
chunk block page frame packet stream channel socket listener connection pool descriptor volume mount
bucket object blob record row column table view trigger transaction isolation lock latch mutex
semaphore barrier fence epoch generation version revision migration rollout canary flag toggle
experiment metric counter gauge histogram span trace sampler exporter collector agent probe alert
incident runbook dashboard quota limit throttle invoice refund dispute charge subscription account
workspace project organization role permission policy scope audit retention archive backup replication
failover recovery journal compaction vacuum eviction prefetch warmup embedding vector similarity
ranking scorer reranker retriever assembler renderer template prompt window request response client
server controller operator reconciler informer watcher queueing consumer producer topic stream offset
"""

_VERBS_TEXT = """
rotate flush replay compact evict validate reject batch shard replicate throttle retry sign verify
encode decode index merge split schedule drain promote demote renew expire invalidate hydrate snapshot
stream buffer route proxy cache prune truncate reconcile publish subscribe acknowledge deduplicate
quarantine migrate restore archive checkpoint emit sample export aggregate allocate release lock unlock
poll notify resolve serialize rebalance fence elect observe replay rewrite bootstrap
"""

_ADJECTIVES_TEXT = """
stale fresh durable idempotent transient terminal eventual strict lazy eager bounded unbounded shared
isolated regional global primary secondary cold warm hot partial incremental atomic concurrent
sequential ordered deterministic degraded healthy critical optional encrypted signed compressed sparse
dense hybrid lexical semantic cached pinned versioned immutable mutable ephemeral persistent async
blocking orphaned pending synchronous nonblocking lossy lossless stateless stateful replicated sharded
batched streaming buffered throttled queued scheduled expired revoked rotated quarantined canonical
verbose quiet noisy flaky stable unstable deprecated experimental legacy internal external public
private readonly writable portable native remote local upstream downstream inbound outbound nested
flat hierarchical weighted unweighted approximate exact lenient greedy adaptive static dynamic
elastic redundant consistent inconsistent recoverable retryable fatal benign
"""

_PREFIXES = ["re", "pre", "sub", "multi", "auto", "meta", "micro", "inter", "over", "un", "de", "co", "post"]
_SUFFIXES = ["ing", "er", "able", "map", "set", "log", "ctl", "d", "less", "id", "ops", "kit", "store", "let"]
_VERB_PREFIXES = ["re", "pre", "auto", "un", "de", "over"]

NOUNS = _NOUNS_TEXT.split()
VERBS = _VERBS_TEXT.split()
ADJECTIVES = _ADJECTIVES_TEXT.split()

_ONSETS = ["b", "br", "c", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "st", "t", "tr", "v", "z"]
_VOWELS = ["a", "e", "i", "o", "u", "a", "e", "o"]  # plain vowels twice: names stay pronounceable
_CODAS = ["", "", "n", "r", "x", "k", "l", "s", "th", "m"]


def third_person(verb: str) -> str:
    if verb.endswith(("s", "sh", "ch", "x", "z")):
        return verb + "es"
    if verb.endswith("y") and verb[-2:-1] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


@dataclass(frozen=True)
class Pool:
    """Words with cumulative Zipf weights: a few common ones and a long tail, as in real text."""

    words: list[str]
    cum_weights: list[float]

    def draw(self, rng: random.Random) -> str:
        return rng.choices(self.words, cum_weights=self.cum_weights)[0]

    def draws(self, rng: random.Random, k: int) -> list[str]:
        return rng.choices(self.words, cum_weights=self.cum_weights, k=k)


def _zipf(words: list[str], offset: float) -> Pool:
    # The offset flattens the head: real docs have no single content word in most chunks.
    return Pool(words, list(itertools.accumulate(1.0 / (rank + offset) for rank in range(len(words)))))


@dataclass(frozen=True)
class Vocabulary:
    terms: Pool  # nouns, derived words, product names and two-word compounds
    verbs: Pool
    adjectives: Pool
    names: list[str]  # generated product/service names, for titles and identifiers


def _names(rng: random.Random, count: int) -> list[str]:
    found: dict[str, None] = {}
    while len(found) < count:
        syllables = rng.choice((2, 2, 2, 3))
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables))
        word += rng.choice(_CODAS)
        if 5 <= len(word) <= 9:
            found[word] = None
    return list(found)


def build_vocabulary(seed: int, size: int = 3000) -> Vocabulary:
    """``size`` terms, Zipf-weighted in a seeded order, plus verb and adjective pools."""
    rng = random.Random(f"ctx-bench-vocabulary:{seed}")
    names = _names(rng, 500)
    # Derived words ("reindex", "shardmap", "leasectl") give thousands of distinct, plausible terms.
    derived = [p + r for p in _PREFIXES for r in NOUNS] + [r + s for r in NOUNS for s in _SUFFIXES]
    rng.shuffle(derived)
    compounds = [f"{a} {b}" for a, b in itertools.product(ADJECTIVES + NOUNS, NOUNS) if a != b]
    rng.shuffle(compounds)
    n_compounds = size // 5
    others = list(dict.fromkeys(NOUNS + names + [d for d in derived if len(d) <= 14]))
    terms = list(dict.fromkeys(others[: size - n_compounds] + compounds))[:size]
    rng.shuffle(terms)
    verbs = list(dict.fromkeys(VERBS + [p + v for p in _VERB_PREFIXES for v in VERBS]))
    rng.shuffle(verbs)
    adjectives = list(dict.fromkeys(ADJECTIVES))
    rng.shuffle(adjectives)
    return Vocabulary(_zipf(terms, 30), _zipf(verbs, 20), _zipf(adjectives, 40), names)

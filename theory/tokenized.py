"""An exact test bed for coupling models whose tokenizers differ (issue 14).

A *text model* is a law over finished byte strings: a byte-level Markov chain with an end
symbol (:class:`TextModel`). A *tokenized model* (:class:`TokenizedModel`) is that law pushed
through a deterministic tokenizer (:class:`Tokenizer`): the law of ``encode(text) + [end]``. Its
next-token conditionals are computed exactly by enumerating every finished text (bounded by
``max_length``) and building the trie of their canonical tokenizations, so a model that "spends
two tokens where another spends one" is represented exactly, including texts that stop inside
what would have been a longer token, zero-length tokens and several ids with the same bytes.

:func:`next_byte_law` goes back the other way: the next-*byte* law of a tokenized model given a
byte prefix, by marginalising over every tokenization that covers the prefix (Phan et al. 2024,
"Exact byte-level probabilities from tokenized language models", byte-token representation
lemma; Hayase et al. 2025, "Sampling from your language model one byte at a time"). For the
pushforward models it must equal the text model's own next-byte law, whatever the tokenizer —
the exactness the byte-level coupling rests on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from coupled.tables.noise_keys import canonical_token_bytes
from coupled.theory.couplings import gumbel_max_joint

END_PIECE = "</s>"


@dataclass(frozen=True)
class TextModel:
    """Byte-level Markov text model with an end symbol.

    ``start`` (A + 1,) is the law of the first symbol and ``transition`` (A, A + 1) the law of
    the next symbol given the previous byte; the last entry of each is the end symbol. Texts
    shorter than ``min_length`` cannot end (the end probability is removed and the row
    renormalised) and a text of ``max_length`` bytes must end, so the law has finite support.
    """

    alphabet: bytes
    start: np.ndarray
    transition: np.ndarray
    min_length: int = 0
    max_length: int = 8
    name: str = "text"

    def __post_init__(self) -> None:
        a = len(self.alphabet)
        if a == 0 or len(set(self.alphabet)) != a:
            raise ValueError(f"alphabet must be distinct bytes, got {self.alphabet!r}")
        start = np.asarray(self.start, dtype=np.float64)
        trans = np.asarray(self.transition, dtype=np.float64)
        if start.shape != (a + 1,) or trans.shape != (a, a + 1):
            raise ValueError(f"start must have shape {(a + 1,)} and transition {(a, a + 1)}, "
                             f"got {start.shape} and {trans.shape}")
        for name, arr in (("start", start), ("transition", trans)):
            if np.any(arr < 0) or not np.allclose(arr.sum(axis=-1), 1.0):
                raise ValueError(f"{name} rows must be probability vectors")
        if not 0 <= self.min_length <= self.max_length:
            raise ValueError(f"need 0 <= min_length <= max_length, got {self.min_length}, "
                             f"{self.max_length}")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "transition", trans)

    @cached_property
    def _index(self) -> dict[int, int]:
        return {b: i for i, b in enumerate(self.alphabet)}

    def next_symbol_law(self, prefix: bytes) -> np.ndarray:
        """Law of the next symbol (alphabet order, end last) after the text ``prefix``."""
        n = len(prefix)
        law = np.zeros(len(self.alphabet) + 1)
        if n >= self.max_length:
            law[-1] = 1.0
            return law
        law[:] = self.start if n == 0 else self.transition[self._index[prefix[-1]]]
        if n < self.min_length:
            law[-1] = 0.0
            law /= law.sum()
        return law

    @cached_property
    def text_law(self) -> dict[bytes, float]:
        """Every finished text with positive probability, and its probability (exact)."""
        law: dict[bytes, float] = {}
        stack = [(b"", 1.0)]
        while stack:
            prefix, mass = stack.pop()
            nxt = self.next_symbol_law(prefix)
            if nxt[-1] > 0:
                law[prefix] = mass * nxt[-1]
            for i, b in enumerate(self.alphabet):
                if nxt[i] > 0:
                    stack.append((prefix + bytes([b]), mass * nxt[i]))
        return dict(sorted(law.items()))


def bigram_text_model(alphabet: bytes = b"ab ", *, seed: int = 0, min_length: int = 0,
                      max_length: int = 8, end_probs: Sequence[float] | None = None,
                      concentration: float = 1.0, name: str = "text") -> TextModel:
    """A random bigram :class:`TextModel`: Dirichlet next-byte rows, and an end probability
    that depends on the previous byte (``end_probs``, one per byte; random by default), so that
    "the text ends here" carries information about the last byte."""
    rng = np.random.default_rng(seed)
    a = len(alphabet)
    ends = (rng.uniform(0.05, 0.45, size=a) if end_probs is None
            else np.asarray(end_probs, dtype=np.float64))
    rows = rng.dirichlet(np.full(a, concentration), size=a + 1)
    trans = np.concatenate([rows[:a] * (1 - ends)[:, None], ends[:, None]], axis=1)
    start = np.concatenate([rows[a] * (1 - ends.mean()), [ends.mean()]])
    return TextModel(alphabet, start, trans, min_length, max_length, name)


@dataclass(frozen=True)
class Tokenizer:
    """A deterministic tokenizer over bytes: vocabulary pieces, canonical bytes, encode/decode.

    ``pieces`` are the vocabulary as the tokenizer writes it (``▁``/``Ġ`` spaces, ``<0xNN>``
    byte fallback, ``</w>`` end-of-word forms) and are read through
    :func:`coupled.tables.noise_keys.canonical_token_bytes` with ``scheme``; ``specials`` are
    pieces that stand for no bytes (the end piece ``</s>`` must be one; others are zero-length
    control tokens). ``algorithm`` is ``"bpe"`` (``merges`` applied in rank order, leftmost
    occurrence of the best-ranked pair first) or ``"longest"`` (greedy longest match).
    Options that make the awkward cases of real vocabularies appear in canonical tokenizations:

    * ``dummy_prefix`` — SentencePiece: the text is encoded with a space in front and the
      decoder drops the first byte when it is a space, so the first token's space adds no
      bytes (a text starting with a space begins with a zero-length ``▁``);
    * ``final_marker`` — a zero-length special piece put before the last token of every
      non-empty text (it depends on how the text continues: a draw at the same byte offset
      follows it, with candidates that were also candidates before it);
    * ``word_final_suffix`` — pieces ending with it (``"a</w>"``) are the ids used for a
      token that ends a word (followed by a space or the end), so several ids with the same
      bytes all have positive probability at one position.
    """

    name: str
    pieces: tuple[str, ...]
    scheme: str = "plain"
    algorithm: str = "longest"
    merges: tuple[tuple[bytes, bytes], ...] = ()
    specials: frozenset[str] = frozenset({END_PIECE})
    end_piece: str = END_PIECE
    dummy_prefix: bool = False
    final_marker: str | None = None
    word_final_suffix: str | None = None
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(set(self.pieces)) != len(self.pieces):
            raise ValueError(f"tokenizer {self.name!r}: pieces must be distinct strings")
        for piece in (self.end_piece, self.final_marker):
            if piece is not None and (piece not in self.pieces or piece not in self.specials):
                raise ValueError(f"tokenizer {self.name!r}: {piece!r} must be a special piece "
                                 "of the vocabulary")
        if self.algorithm not in ("bpe", "longest"):
            raise ValueError(f"algorithm must be 'bpe' or 'longest', got {self.algorithm!r}")

    @cached_property
    def token_bytes(self) -> tuple[bytes, ...]:
        """Canonical bytes of every id (b"" for special pieces)."""
        return tuple(b"" if p in self.specials else
                     canonical_token_bytes(p, self.scheme,
                                           end_of_word_suffix=self.word_final_suffix)
                     for p in self.pieces)

    @property
    def end_id(self) -> int:
        return self.pieces.index(self.end_piece)

    @property
    def vocab_size(self) -> int:
        return len(self.pieces)

    @cached_property
    def _ids_by_bytes(self) -> tuple[dict[bytes, int], dict[bytes, int]]:
        plain: dict[bytes, int] = {}
        final: dict[bytes, int] = {}
        suffix = self.word_final_suffix
        for i, (p, b) in enumerate(zip(self.pieces, self.token_bytes, strict=True)):
            if p in self.specials:
                continue
            target = final if suffix and p.endswith(suffix) else plain
            target.setdefault(b, i)
        return plain, final

    def _segments(self, data: bytes) -> list[bytes]:
        plain, _ = self._ids_by_bytes
        if self.algorithm == "longest":
            longest = max(len(b) for b in plain)
            out, i = [], 0
            while i < len(data):
                for n in range(min(longest, len(data) - i), 0, -1):
                    if data[i:i + n] in plain:
                        out.append(data[i:i + n])
                        i += n
                        break
                else:
                    raise ValueError(f"tokenizer {self.name!r} cannot encode byte "
                                     f"{data[i:i + 1]!r} of {data!r}")
            return out
        symbols = [data[i:i + 1] for i in range(len(data))]
        missing = [s for s in symbols if s not in plain]
        if missing:
            raise ValueError(f"tokenizer {self.name!r} has no piece for byte {missing[0]!r}")
        ranks = {pair: r for r, pair in enumerate(self.merges)}
        while len(symbols) > 1:
            pairs = [(ranks.get((symbols[i], symbols[i + 1]), len(ranks)), i)
                     for i in range(len(symbols) - 1)]
            best, i = min(pairs)
            if best == len(ranks):
                break
            symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
        return symbols

    def encode(self, text: bytes) -> list[int]:
        """Canonical ids of a finished ``text``, end id included."""
        cached = self._cache.get(text)
        if cached is not None:
            return list(cached)
        data = b" " + text if self.dummy_prefix else text
        plain, final = self._ids_by_bytes
        segments = self._segments(data)
        ids, pos = [], 0
        for seg in segments:
            pos += len(seg)
            ends_word = pos == len(data) or data[pos:pos + 1] == b" "
            if ends_word and seg in final:
                ids.append(final[seg])
            else:
                ids.append(plain[seg])
        if self.final_marker is not None and ids:
            ids.insert(len(ids) - 1, self.pieces.index(self.final_marker))
        ids.append(self.end_id)
        self._cache[text] = tuple(ids)
        return ids

    def decode(self, ids: Sequence[int]) -> bytes:
        """Bytes of the cumulative ids (SentencePiece's dummy-prefix space dropped)."""
        raw = b"".join(self.token_bytes[i] for i in ids)
        if self.dummy_prefix and raw.startswith(b" "):
            raw = raw[1:]
        return raw


@dataclass(frozen=True)
class TokenizedModel:
    """A :class:`TextModel` pushed through a :class:`Tokenizer`, as a trie of token prefixes.

    Node 0 is the empty prefix. For node ``n`` and id ``v``: ``probs[n, v]`` is the exact
    next-token conditional, ``child[n, v]`` the node reached (-1 where ``probs`` is 0),
    ``added[n, v]`` the index in ``strings`` of the bytes ``v`` adds to the reply there
    (``decode(prefix + [v])`` minus ``decode(prefix)``; -1 where impossible). Per node:
    ``mass`` (probability that the token sequence starts with the prefix), ``text`` (decoded
    reply so far), ``step``, ``counter`` (draws already made at the current byte offset) and
    ``terminal`` (the prefix ends with the end id).
    """

    text_model: TextModel
    tokenizer: Tokenizer
    probs: np.ndarray
    child: np.ndarray
    added: np.ndarray
    strings: tuple[bytes, ...]
    mass: np.ndarray
    text: tuple[bytes, ...]
    step: np.ndarray
    counter: np.ndarray
    terminal: np.ndarray

    @property
    def name(self) -> str:
        return f"{self.text_model.name}/{self.tokenizer.name}"

    @property
    def n_nodes(self) -> int:
        return len(self.mass)

    @property
    def offset(self) -> np.ndarray:
        return np.fromiter((len(t) for t in self.text), dtype=np.int64, count=self.n_nodes)

    def node_of(self, ids: Sequence[int]) -> int:
        """The trie node of the token prefix ``ids``; ``ValueError`` if it has probability 0."""
        node = 0
        for k, v in enumerate(ids):
            nxt = int(self.child[node, v]) if 0 <= v < self.child.shape[1] else -1
            if nxt < 0:
                raise ValueError(f"model {self.name!r}: token prefix {list(ids[:k + 1])} has "
                                 "probability 0 (not a prefix of a canonical tokenization)")
            node = nxt
        return node

    def next_token_law(self, ids: Sequence[int]) -> np.ndarray:
        """Exact next-token law (V,) after the token prefix ``ids`` — what a wrapper that makes
        this model look like a language model to a runner returns (log of it as logits)."""
        node = self.node_of(ids)
        if self.terminal[node]:
            raise ValueError(f"model {self.name!r}: token prefix {list(ids)} already ended")
        return self.probs[node].copy()

    def text_law(self) -> dict[bytes, float]:
        """The law of the decoded reply, read off the terminal nodes (equals the text law)."""
        law: dict[bytes, float] = {}
        for n in np.flatnonzero(self.terminal):
            law[self.text[n]] = law.get(self.text[n], 0.0) + float(self.mass[n])
        return dict(sorted(law.items()))


def tokenized_model(text_model: TextModel, tokenizer: Tokenizer) -> TokenizedModel:
    """Push ``text_model``'s law through ``tokenizer``; conditionals by exact enumeration.

    Raises ``ValueError`` if the tokenizer cannot encode a text or does not decode its own
    encoding back to the text (the pushforward would then not be the text law).
    """
    vocab = tokenizer.vocab_size
    end = tokenizer.end_id
    edges: dict[tuple[int, int], int] = {}
    mass = [0.0]
    parent_of = [-1]
    id_of = [-1]
    for text, p in text_model.text_law.items():
        ids = tokenizer.encode(text)
        if tokenizer.decode(ids) != text:
            raise ValueError(f"tokenizer {tokenizer.name!r} does not decode its encoding of "
                             f"{text!r} back (got {tokenizer.decode(ids)!r})")
        node = 0
        mass[0] += p
        for v in ids:
            nxt = edges.get((node, v))
            if nxt is None:
                nxt = len(mass)
                edges[(node, v)] = nxt
                mass.append(0.0)
                parent_of.append(node)
                id_of.append(v)
            mass[nxt] += p
            node = nxt
    n_nodes = len(mass)
    mass_arr = np.asarray(mass)
    probs = np.zeros((n_nodes, vocab))
    child = np.full((n_nodes, vocab), -1, dtype=np.int64)
    for (node, v), c in edges.items():
        child[node, v] = c
        probs[node, v] = mass_arr[c] / mass_arr[node]
    # Nodes are created in walk order, so a parent always precedes its children.
    texts: list[bytes] = [b""] * n_nodes
    raw: list[bytes] = [b""] * n_nodes
    step = np.zeros(n_nodes, dtype=np.int64)
    counter = np.zeros(n_nodes, dtype=np.int64)
    terminal = np.zeros(n_nodes, dtype=bool)
    strings: dict[bytes, int] = {}
    added = np.full((n_nodes, vocab), -1, dtype=np.int64)
    tb = tokenizer.token_bytes
    for c in range(1, n_nodes):
        par, v = parent_of[c], id_of[c]
        raw[c] = raw[par] + tb[v]
        texts[c] = raw[c][1:] if tokenizer.dummy_prefix and raw[c].startswith(b" ") else raw[c]
        step[c] = step[par] + 1
        terminal[c] = v == end
        counter[c] = counter[par] + 1 if len(texts[c]) == len(texts[par]) else 0
        if not terminal[c]:
            delta = texts[c][len(texts[par]):]
            if texts[c][:len(texts[par])] != texts[par]:
                raise ValueError(f"tokenizer {tokenizer.name!r}: decoding is not prefix-stable")
        else:
            delta = b""
        added[par, v] = strings.setdefault(delta, len(strings))
    return TokenizedModel(text_model, tokenizer, probs, child, added, tuple(strings),
                          mass_arr, tuple(texts), step, counter, terminal)


# --- next-byte laws from token laws (byte-token representation) ---------------------------


@dataclass(frozen=True)
class ByteLaw:
    """Next-symbol law of a tokenized model after a byte prefix, and what it cost.

    ``probs`` is over ``alphabet`` then end (the text model's order); ``frontier`` the nodes
    whose decoded text is a prefix of the byte prefix and that can still extend it (the covering
    tokenizations); ``calls`` how many distinct nodes' next-token laws (model calls) computing
    the laws of this prefix and all its prefixes needed.
    """

    probs: np.ndarray
    frontier: tuple[int, ...]
    calls: int


class ByteView:
    """A tokenized model seen one byte at a time: :meth:`law` of any byte prefix, cached.

    The law at prefix ``b`` sums, over every node ``n`` whose decoded text is a prefix of ``b``
    (every tokenization covering ``b``'s prefixes) and every next token ``v`` whose bytes carry
    the text past ``b``, ``mass[n] * probs[n, v]`` onto the byte that follows ``b``; a node whose
    text *is* ``b`` puts its end probability onto the end symbol. Nodes are reached
    incrementally: the frontier of ``b + c`` is the frontier of ``b`` (less nodes that can no
    longer reach past it) plus the nodes whose text is ``b + c`` — the covering-tree idea of
    Hayase et al. (2025). In this pushforward test bed only canonical tokenizations have
    positive mass, so the frontier stays small; a real model gives every tokenization some mass
    and needs their pruning rules.
    """

    def __init__(self, model: TokenizedModel) -> None:
        self.model = model
        self.alphabet = model.text_model.alphabet
        self._sym = {b: i for i, b in enumerate(self.alphabet)}
        self._cache: dict[bytes, ByteLaw] = {}
        # per node: the (id, added bytes, child) of its possible next tokens
        self._children: list[list[tuple[int, bytes, int]]] = [[] for _ in range(model.n_nodes)]
        nodes, ids = np.nonzero(model.probs > 0)
        for n, v in zip(nodes.tolist(), ids.tolist(), strict=True):
            self._children[n].append((v, model.strings[model.added[n, v]],
                                      int(model.child[n, v])))
        self._max_reach = np.array([max((len(model.text[n]) + len(s) for _, s, _ in ch),
                                        default=-1) for n, ch in enumerate(self._children)])

    def _expand(self, seeds: list[int], prefix: bytes) -> list[int]:
        """Seeds plus every node reached from them by tokens whose text stays equal to ``prefix``
        (zero-length tokens); all of them have text ``prefix``."""
        out, stack = [], list(seeds)
        end = self.model.tokenizer.end_id
        while stack:
            n = stack.pop()
            out.append(n)
            for v, s, c in self._children[n]:
                if not s and v != end:
                    stack.append(c)
        return out

    def law(self, prefix: bytes) -> ByteLaw:
        cached = self._cache.get(prefix)
        if cached is not None:
            return cached
        m = self.model
        if not prefix:
            frontier = self._expand([0], b"")
            calls = len(frontier)
        else:
            parent = self.law(prefix[:-1])
            new = [c for n in parent.frontier for v, s, c in self._children[n]
                   if s and len(m.text[n]) + len(s) == len(prefix)
                   and m.text[n] + s == prefix]
            new = self._expand(new, prefix)
            keep = [n for n in parent.frontier
                    if self._max_reach[n] > len(prefix) and self._reaches_past(n, prefix)]
            frontier = keep + new
            calls = parent.calls + len(new)
        probs = np.zeros(len(self.alphabet) + 1)
        end = m.tokenizer.end_id
        depth = len(prefix)
        for n in frontier:
            base = m.text[n]
            for v, s, _ in self._children[n]:
                p = m.mass[n] * m.probs[n, v]
                if v == end:
                    if base == prefix:
                        probs[-1] += p
                    continue
                full = base + s
                if len(full) > depth and full[:depth] == prefix:
                    probs[self._sym[full[depth]]] += p
        total = probs.sum()
        if total <= 0:
            raise ValueError(f"model {m.name!r} gives the byte prefix {prefix!r} probability 0")
        out = ByteLaw(probs / total, tuple(frontier), calls)
        self._cache[prefix] = out
        return out

    def _reaches_past(self, n: int, prefix: bytes) -> bool:
        base = self.model.text[n]
        return any(len(base) + len(s) > len(prefix) and (base + s)[:len(prefix)] == prefix
                   for _, s, _ in self._children[n])


def next_byte_law(model: TokenizedModel, prefix: bytes) -> np.ndarray:
    """The tokenized model's next-symbol law (alphabet order, end last) after ``prefix``."""
    return ByteView(model).law(prefix).probs


# --- the standard test bed ----------------------------------------------------------------


def standard_tokenizers() -> dict[str, Tokenizer]:
    """The test bed's tokenizers over the bytes ``a``, ``b`` and space, each multi-byte:

    * ``bytes``     — one id per byte (the byte vocabulary; used only as a reference);
    * ``bpe``       — byte-level BPE (GPT-2 style ``Ġ`` spaces), overlapping ``a``/``b``/``ab``
      and ``Ġa``/``Ġab``, prefixes of one another;
    * ``spm``       — SentencePiece style, greedy longest match with a dummy prefix (a leading
      ``▁`` adds no bytes at the start), ``b`` only through byte fallback ``<0x62>``, and
      ``▁ab``/``▁a``/``▁`` prefixes of one another;
    * ``eow``       — original BPE with ``</w>`` word-final ids: ``a``/``a</w>``, ``b``/``b</w>``,
      ``ab``/``ab</w>`` are several ids with the same bytes, both possible at one position;
    * ``marker``    — greedy longest match with ``aa``/``ab``/``ba``/``b a`` and a zero-length
      control token ``<final>`` before every text's last token;
    * ``shared``    — a multi-byte vocabulary that is not the byte one (``ab``, ``ba``, `` a``),
      the "same tokenizer" reference for the variance-reduction goal.
    """
    end = END_PIECE
    return {
        "bytes": Tokenizer("bytes", ("a", "b", " ", end)),
        "bpe": Tokenizer("bpe", ("a", "b", "Ġ", "ab", "Ġa", "Ġab", "ba", end),
                         scheme="byte_level", algorithm="bpe",
                         merges=((b"a", b"b"), (b" ", b"a"), (b" ", b"ab"), (b"b", b"a"))),
        "spm": Tokenizer("spm", ("▁", "▁a", "▁ab", "a", "ab", "<0x62>", "▁b", end),
                         scheme="sentencepiece", dummy_prefix=True),
        "eow": Tokenizer("eow", ("a", "b", " ", "ab", "a</w>", "b</w>", "ab</w>", end),
                         algorithm="bpe", merges=((b"a", b"b"),), word_final_suffix="</w>"),
        "marker": Tokenizer("marker", ("a", "b", " ", "aa", "ab", "ba", "b a", "<final>", end),
                            specials=frozenset({end, "<final>"}), final_marker="<final>"),
        "shared": Tokenizer("shared", ("a", "b", " ", "ab", "ba", " a", end)),
    }


def perturbed_text_model(model: TextModel, *, scale: float, seed: int, name: str
                         ) -> TextModel:
    """``model`` with Gaussian noise of standard deviation ``scale`` added to its log
    transition probabilities (the end symbol included), renormalised: a nearby text model, as
    a quantised or distilled variant is to its original."""
    rng = np.random.default_rng(seed)

    def jitter(rows: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            logits = np.log(rows) + rng.normal(0.0, scale, size=rows.shape)
        out = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return out / out.sum(axis=-1, keepdims=True)

    return TextModel(model.alphabet, jitter(model.start), jitter(model.transition),
                     model.min_length, model.max_length, name)


def standard_text_models(*, min_length: int = 0, max_length: int = 6, scale: float = 0.5
                         ) -> tuple[TextModel, TextModel]:
    """The pair of different text models of part (b), over ``a``, ``b`` and space: a bigram
    model ``A`` whose end probability depends on the last byte (0.05 after a space, 0.35 after
    ``b``), and ``B``, ``A`` with its log-probabilities jittered by ``scale``."""
    a = bigram_text_model(b"ab ", seed=11, min_length=min_length, max_length=max_length,
                          end_probs=(0.15, 0.35, 0.05), concentration=2.0, name="A")
    return a, perturbed_text_model(a, scale=scale, seed=12, name="B")


# --- exact joint law of two text models under the byte-level coupling ---------------------


@dataclass(frozen=True)
class CoupledPairMoments:
    """Exact figures for two models sampled with shared noise under one coupling:
    ``p_same`` = P(same text), ``mean`` (2,), ``variance`` (2,) and ``cross`` = E[S_1 S_2] of a
    text-level score, and ``ratio`` = Var_coupled[S_1 - S_2] / Var_independent[S_1 - S_2]."""

    p_same: float
    mean: tuple[float, float]
    variance: tuple[float, float]
    cross: float
    ratio: float


def _prefix_score_sums(model: TextModel, score) -> dict[bytes, tuple[float, float]]:
    sums: dict[bytes, list[float]] = {}
    for text, p in model.text_law.items():
        s = score(text)
        for k in range(len(text) + 1):
            acc = sums.setdefault(text[:k], [0.0, 0.0])
            acc[0] += p
            acc[1] += p * s
    return {k: (v[0], v[1]) for k, v in sums.items()}


def byte_coupled_moments(first: TextModel, second: TextModel, score) -> CoupledPairMoments:
    """Exact :class:`CoupledPairMoments` under the byte-level coupling, by dynamic programming
    over pairs of byte prefixes of the same length (both models draw their byte at one offset
    from one noise vector, so each step's joint is :func:`gumbel_max_joint` of their next-symbol
    laws; once one has ended the other continues on noise the first never reads). Feasible for
    short texts only (pairs of prefixes grow as |alphabet|^(2n)). Tokenizers do not enter: the
    byte laws of any tokenization are the text model's own (:class:`ByteView`)."""
    if first.alphabet != second.alphabet:
        raise ValueError("the two text models must share an alphabet")
    alphabet = first.alphabet
    n_sym = len(alphabet) + 1
    sums = (_prefix_score_sums(first, score), _prefix_score_sums(second, score))
    p_same = cross = 0.0
    level = {(b"", b""): 1.0}
    while level:
        nxt: dict[tuple[bytes, bytes], float] = {}
        for (pa, pb), mass in level.items():
            joint = gumbel_max_joint(first.next_symbol_law(pa), second.next_symbol_law(pb))
            for i, j in zip(*np.nonzero(joint > 0), strict=True):
                m = mass * joint[i, j]
                ta = pa if i == n_sym - 1 else pa + alphabet[i:i + 1]
                tb = pb if j == n_sym - 1 else pb + alphabet[j:j + 1]
                if i == n_sym - 1 and j == n_sym - 1:
                    p_same += m * (pa == pb)
                    cross += m * score(pa) * score(pb)
                elif i == n_sym - 1:   # the first ended; the second goes on from tb alone
                    q, qs = sums[1][tb]
                    cross += m * score(pa) * qs / q
                elif j == n_sym - 1:
                    q, qs = sums[0][ta]
                    cross += m * score(pb) * qs / q
                else:
                    nxt[(ta, tb)] = nxt.get((ta, tb), 0.0) + m
        level = nxt
    return _moments(first, second, p_same, cross, score)


def exact_score_moments(law: dict[bytes, float], score) -> tuple[float, float]:
    """Mean and variance of ``score(text)`` under a text law (exact)."""
    p = np.fromiter(law.values(), dtype=np.float64)
    s = np.fromiter((score(t) for t in law), dtype=np.float64)
    mean = float(p @ s)
    return mean, float(p @ (s - mean) ** 2)


def _moments(first: TextModel, second: TextModel, p_same: float, cross: float, score
             ) -> CoupledPairMoments:
    means, variances = zip(*(exact_score_moments(m.text_law, score) for m in (first, second)),
                           strict=True)
    cov = cross - means[0] * means[1]
    ratio = (variances[0] + variances[1] - 2 * cov) / (variances[0] + variances[1])
    return CoupledPairMoments(float(p_same), (means[0], means[1]),
                              (variances[0], variances[1]), float(cross), float(ratio))


TOKEN_PAIR_COUPLINGS = ("token", "union", "text")


def token_coupled_moments(first: TokenizedModel, second: TokenizedModel, coupling: str,
                          score) -> CoupledPairMoments:
    """Exact :class:`CoupledPairMoments` of two tokenized models under a token-level coupling,
    by dynamic programming over pairs of trie nodes (short texts only).

    Each draw is positioned — by its step (``token``, ``union``) or by (byte offset, counter)
    (``text``) — and the pair is advanced in position order: the model at the earlier position
    draws alone (its noise there is never read by the other, whose position is already later
    and only grows); at equal positions both draw from one noise vector, so the draw's joint is
    :func:`gumbel_max_joint` of their laws over the union of candidate keys (ids for ``token``;
    canonical bytes, duplicates merged, one end key, for ``union``/``text``), and an id is then
    picked within the winning bytes by the duplicate stream, itself shared by id number. This is
    what :mod:`coupled.simulate.crosstok` samples; tests compare the two.
    """
    if coupling not in TOKEN_PAIR_COUPLINGS:
        raise ValueError(f"coupling must be one of {list(TOKEN_PAIR_COUPLINGS)}, got "
                         f"{coupling!r}")
    models = (first, second)
    node_sums = [_node_score_sums(m, score) for m in models]
    terminal_of = [{m.text[n]: n for n in np.flatnonzero(m.terminal)} for m in models]
    ancestors = [_ancestor_sets(m) for m in models]

    def position(k: int, n: int) -> tuple[int, int]:
        m = models[k]
        if m.terminal[n]:
            return (1 << 62, 0)
        if coupling == "text":
            return (len(m.text[n]), int(m.counter[n]))
        return (int(m.step[n]), 0)

    def options(k: int, n: int) -> dict:
        """key -> list of (id, probability) of model k at node n."""
        m = models[k]
        out: dict = {}
        end = m.tokenizer.end_id
        for v in np.flatnonzero(m.probs[n] > 0):
            if coupling == "token":
                key = ("id", int(v))
            elif v == end:
                key = ("end",)
            else:
                key = ("bytes", m.strings[m.added[n, v]])
            out.setdefault(key, []).append((int(v), float(m.probs[n, v])))
        return out

    p_same = cross = 0.0
    level = {(0, 0): 1.0}
    while level:
        nxt: dict[tuple[int, int], float] = {}
        for (n1, n2), mass in level.items():
            t1, t2 = first.terminal[n1], second.terminal[n2]
            if t1 or t2:
                # one has ended: the other finishes alone on noise the first never read
                done, other, on = (0, 1, n2) if t1 else (1, 0, n1)
                text = models[done].text[n1 if t1 else n2]
                tot, ssum = node_sums[other][on]
                cross += mass * score(text) * ssum / tot
                leaf = terminal_of[other].get(text)
                if leaf is not None and on in ancestors[other][leaf]:
                    p_same += mass * models[other].mass[leaf] / models[other].mass[on]
                continue
            pos1, pos2 = position(0, n1), position(1, n2)
            if pos1 != pos2:
                k, n = (0, n1) if pos1 < pos2 else (1, n2)
                m = models[k]
                for v in np.flatnonzero(m.probs[n] > 0):
                    c = int(m.child[n, v])
                    pair = (c, n2) if k == 0 else (n1, c)
                    nxt[pair] = nxt.get(pair, 0.0) + mass * float(m.probs[n, v])
                continue
            o1, o2 = options(0, n1), options(1, n2)
            keys = sorted(set(o1) | set(o2))
            p = np.array([sum(q for _, q in o1.get(key, ())) for key in keys])
            q = np.array([sum(q for _, q in o2.get(key, ())) for key in keys])
            joint = gumbel_max_joint(p / p.sum(), q / q.sum())
            for i, j in zip(*np.nonzero(joint > 0), strict=True):
                ids1, ids2 = o1[keys[i]], o2[keys[j]]
                for (v1, v2), w in _pick_joint(ids1, ids2, same=i == j).items():
                    pair = (int(first.child[n1, v1]), int(second.child[n2, v2]))
                    nxt[pair] = nxt.get(pair, 0.0) + mass * joint[i, j] * w
        level = nxt
    return _moments(first.text_model, second.text_model, p_same, cross, score)


def _pick_joint(ids1: list, ids2: list, *, same: bool) -> dict[tuple[int, int], float]:
    """Joint law of the id picked within each model's winning bytes. The pick stream is keyed
    by (position, bytes, id): shared by id number when both won the same bytes, otherwise two
    different keys, hence independent."""
    p1 = np.array([w for _, w in ids1])
    p2 = np.array([w for _, w in ids2])
    p1, p2 = p1 / p1.sum(), p2 / p2.sum()
    if not same or (len(ids1) == 1 and len(ids2) == 1):
        return {(v1, v2): a * b for (v1, _), a in zip(ids1, p1, strict=True)
                for (v2, _), b in zip(ids2, p2, strict=True)}
    universe = sorted({v for v, _ in ids1} | {v for v, _ in ids2})
    x = np.zeros(len(universe))
    y = np.zeros(len(universe))
    for (v, _), w in zip(ids1, p1, strict=True):
        x[universe.index(v)] = w
    for (v, _), w in zip(ids2, p2, strict=True):
        y[universe.index(v)] = w
    joint = gumbel_max_joint(x, y)
    return {(universe[i], universe[j]): float(joint[i, j])
            for i, j in zip(*np.nonzero(joint > 0), strict=True)}


def _node_score_sums(model: TokenizedModel, score) -> list[tuple[float, float]]:
    """Per node: (mass, sum of mass * score over the texts below it)."""
    ssum = np.zeros(model.n_nodes)
    for n in np.flatnonzero(model.terminal):
        ssum[n] = model.mass[n] * score(model.text[n])
    parent = _parents(model)
    for c in range(model.n_nodes - 1, 0, -1):  # children have larger indices than parents
        ssum[parent[c]] += ssum[c]
    return [(float(model.mass[n]), float(ssum[n])) for n in range(model.n_nodes)]


def _parents(model: TokenizedModel) -> np.ndarray:
    parent = np.full(model.n_nodes, -1)
    nodes, ids = np.nonzero(model.child >= 0)
    parent[model.child[nodes, ids]] = nodes
    return parent


def _ancestor_sets(model: TokenizedModel) -> dict[int, set[int]]:
    parent = _parents(model)
    out = {}
    for leaf in np.flatnonzero(model.terminal):
        chain, k = set(), int(leaf)
        while k >= 0:
            chain.add(k)
            k = int(parent[k])
        out[int(leaf)] = chain
    return out

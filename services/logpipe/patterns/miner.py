"""The template miner: pure logic, no I/O. Groups masked messages into patterns.

A message arrives masked (see masking.py) and split on spaces. Patterns live in buckets keyed
by (token count, first token), the first level of Drain's tree (`bucket_key`). Within a bucket a message joins
the pattern it differs from in the fewest constant tokens, as long as those differences stay
under a share of the message (`max_distance`).

Where this goes beyond Drain (see docs/patterns.md):
- Evidence before generalising: a token becomes `<*>` only once `min_variants` messages that
  differ in it have been seen (`user root`, `user admin`, `user guest`). Two messages that
  differ in one word are more often two events (`startup` / `shutdown`) than one event with a
  variable, so they stay apart until a third variant shows the position really varies.
- Generalising keeps the punctuation both sides share (`user=root` + `user=admin` -> `user=<*>`,
  `org.a.Foo` + `org.a.b.Bar` -> `org.a.<*>`).
- A run of adjacent variables is matched as one: a value of several tokens (a date, a list)
  matches the same pattern whatever its length, and the template shows one `<*>` once the run
  has been seen with different lengths. Matching also falls back to aligning a message with
  templates of another length whose `<*>` can absorb the extra tokens.
- Templates that converge (one now covers the other) merge: the pattern with the smaller id
  survives and the other becomes its alias, the same decision on every replica.
- Host names, e-mail addresses and host:port are values (masking.py); UPPER_CASE words (also
  quoted: an HTTP method) never become `<*>`, Capitalised words take twice the evidence
  (`VM Paused` / `VM Resumed` stay apart, names fold); a word meeting a masked value in its
  place folds at once.
- Optional parts do not split an event: before a new pattern is made, the message is looked up
  by `skeleton` (bracketed values and units dropped), so `512 bytes` meets `4096 bytes (4.0 KB)`.
  A quoted value after `=` is one token whatever its words.
- A lower-case first word before a long rest with a value may be a name (`chrome.exe - ...`):
  names that share the rest fold into `<*> rest` once `min_variants` of them are seen.
- Ids are stable: a hash of the first masked message that created the pattern, so two miners
  that see the same messages agree on ids without talking to each other.
- Memory is bounded: past `max_patterns` the least recently used pattern is evicted from memory
  (its id and template stay in the store, see store.py); the alias map is bounded the same way.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass, field

from logpipe.patterns.masking import WILDCARD

ID_BITS = 53  # ids stay exact in JavaScript (the dashboard) and in JSON parsers using doubles
MAX_TOKENS = 256  # tokens of a message that shape its pattern; the rest is one trailing `<*>`
MAX_TOKEN_CHARS = 256  # a longer token is a value (base64, a dump), not a word of the template
_ALL_VARIABLE = re.compile(r"(?:<\*>|[^\w\s<>*])+")  # wildcards and punctuation only


def pattern_id_for(seed: str) -> int:
    """A stable, non-zero id for the pattern first created from `seed` (0 means no pattern)."""
    digest = hashlib.blake2b(seed.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return (int.from_bytes(digest, "big") & ((1 << ID_BITS) - 1)) or 1


def _variable_token(token: str) -> bool:
    # `<*>:<*>:<*>` or `<*>/<*>`: values glued by punctuation; `(<*>)` or `<*>,` stand alone.
    return (token != WILDCARD and token.startswith(WILDCARD) and token.endswith(WILDCARD)
            and _ALL_VARIABLE.fullmatch(token) is not None)


def tokenize(masked: str) -> tuple[list[str], list[int]]:
    """Tokens with adjacent variables folded, and how many tokens each `<*>` stood for.

    A bare `<*>` next to a token made only of variables and punctuation is part of the same
    value (`<*> <*>:<*>:<*> <*>`, a date and a clock time, is one value `<*>:<*>:<*>`).
    """
    raw = masked.split()
    if len(raw) > MAX_TOKENS or len(masked) > MAX_TOKENS * MAX_TOKEN_CHARS // 4:
        # A huge message (a dump, a stack trace in the message) must not cost a huge pattern:
        # its head is its shape, the rest one variable-length value, a giant token a value.
        if len(raw) > MAX_TOKENS:
            raw = raw[:MAX_TOKENS - 1] + [WILDCARD]
        raw = [token if len(token) <= MAX_TOKEN_CHARS else WILDCARD for token in raw]
    if '="' in masked or "='" in masked:
        raw = _join_quoted(raw)
    if WILDCARD not in raw:
        return raw, [1] * len(raw)  # nothing to fold (the common case, kept cheap)
    tokens: list[str] = []
    widths: list[int] = []
    for token in raw:
        if tokens:
            previous = tokens[-1]
            if token == WILDCARD:
                if previous == WILDCARD:
                    widths[-1] += 1
                    continue
                if _variable_token(previous):
                    continue
            elif previous == WILDCARD and _variable_token(token):
                tokens.pop()
                widths.pop()
        tokens.append(token)
        widths.append(1)
    return tokens, widths


# A bracketed value (`(<*>)`, `[<*>],`): in many formats printed only sometimes (`512 bytes` /
# `4096 bytes (4.0 KB)`).
_OPTIONAL = re.compile(r"[(\[{](?:<\*>|[^\w\s<>*])*[)\]}][^\w\s<>*]?")
# Units after a value: how a value is written (`<*>:<*>`, `<*> sec`), not what the event is.
_UNITS = frozenset({"ms", "s", "sec", "secs", "second", "seconds", "min", "mins", "minute", "minutes",
                    "h", "hr", "hrs", "hour", "hours", "us", "ns", "d", "day", "days",
                    "b", "byte", "bytes", "kb", "mb", "gb", "tb", "kib", "mib", "gib", "%"})


def skeleton(tokens: list[str]) -> str:
    """The message with its optional parts dropped: bracketed values, a unit after a value, and
    the way a value is written (`<*>:<*>` and `<*> sec` are both `<*>`). Two messages with the
    same skeleton are one event written two ways."""
    joined = " ".join(tokens)
    if WILDCARD not in joined:
        return joined  # no value, nothing optional
    out: list[str] = []
    for token in tokens:
        if WILDCARD in token and _OPTIONAL.fullmatch(token) and out:
            out[-1] += token[len(token.rstrip(_TRAILING)):] if token[-1] in _TRAILING else ""
            continue
        word = token.rstrip(_TRAILING)
        if out and out[-1] == WILDCARD and word.lower() in _UNITS:
            out[-1] += token[len(word):]
            continue
        if _variable_token(word):
            token = WILDCARD + token[len(word):]
        if token == WILDCARD and out and out[-1] == WILDCARD:
            continue
        out.append(token)
    return " ".join(out)


_TRAILING = ",;:."


_MAX_QUOTED = 16  # tokens a quoted value may span before it is taken as an unclosed quote


def _join_quoted(raw: list[str]) -> list[str]:
    """A quoted value after `=` is one token whatever its words (`tag="View Lock",` like
    `tag="WindowManager",`), so a value of two words does not make another pattern."""
    out: list[str] = []
    i = 0
    while i < len(raw):
        token = raw[i]
        for quote in ('"', "'"):
            at = token.find("=" + quote)
            if at >= 0 and token.count(quote, at + 2) == 0:  # opened here, closed later
                for j in range(i + 1, min(len(raw), i + _MAX_QUOTED)):
                    if quote in raw[j]:
                        token = " ".join(raw[i:j + 1])
                        i = j
                        break
                break
        out.append(token)
        i += 1
    return out


def bucket_key(tokens: list[str]) -> tuple[int, str]:
    """(token count, first token); a first token that is partly a value (`host-a:<*>`) counts as
    a value, so that `host-a:<*>` and `host-b:<*>` can meet and fold into `<*>:<*>`."""
    if not tokens:
        return 0, ""
    first = tokens[0]
    return len(tokens), WILDCARD if WILDCARD in first else first


def render(tokens: list[str], widths: list[int]) -> str:
    parts = []
    for token, width in zip(tokens, widths):
        parts.append(" ".join([WILDCARD] * width) if token == WILDCARD and width > 1 else token)
    return " ".join(parts)


def _is_boundary(char: str) -> bool:
    return not char.isalnum()


def token_covers(template: str, token: str) -> bool:
    """Whether a template token (possibly with `<*>` inside) matches a message token."""
    if template == token or template == WILDCARD:
        return True
    if WILDCARD not in template:
        return False
    parts = template.split(WILDCARD)
    if not token.startswith(parts[0]) or not token.endswith(parts[-1]):
        return False
    position, end = len(parts[0]), len(token) - len(parts[-1])
    if position > end:
        return False
    for part in parts[1:-1]:
        found = token.find(part, position, end)
        if found < 0:
            return False
        position = found + len(part)
    return True


def generalize_token(old: str, new: str) -> str:
    """The narrowest token covering both: shared punctuation-bounded prefix and suffix, `<*>` between."""
    if token_covers(old, new):
        return old
    if token_covers(new, old):
        return new
    limit = min(len(old), len(new))
    prefix = 0
    while prefix < limit and old[prefix] == new[prefix]:
        prefix += 1
    while prefix > 0 and (not _is_boundary(old[prefix - 1]) or old[:prefix].endswith(("<", "<*"))):
        prefix -= 1
    rest_old, rest_new = old[prefix:], new[prefix:]
    limit = min(len(rest_old), len(rest_new))
    suffix = 0
    while suffix < limit and rest_old[-1 - suffix] == rest_new[-1 - suffix]:
        suffix += 1
    while suffix > 0 and (not _is_boundary(rest_old[-suffix]) or rest_old[-suffix:].startswith((">", "*>"))):
        suffix -= 1
    merged = old[:prefix] + WILDCARD + (rest_old[len(rest_old) - suffix:] if suffix else "")
    while WILDCARD + WILDCARD in merged:
        merged = merged.replace(WILDCARD + WILDCARD, WILDCARD)
    return merged


def _enum_like(token: str) -> bool:
    # UPPER_CASE words are states, event names and verbs (RUNNING, FAILED, `"GET`, `POST`): a
    # different one is a different event, not a variable, also when quoted or bracketed.
    word = token.strip(_WORD_PUNCTUATION)
    return len(word) > 1 and word.isupper() and word.replace("_", "").isalpha()


def _title_word(token: str) -> bool:
    word = token.strip(_WORD_PUNCTUATION)
    return len(word) > 2 and word.istitle() and word.isalpha()


_WORD_PUNCTUATION = "\"'()[]{}<>,;:.!?"


@dataclass(eq=False)
class Pattern:
    id: int
    tokens: list[str]
    widths: list[int]
    count: int = 0
    aliases: set[int] = field(default_factory=set)
    # Index keys while the pattern is indexed (see PatternMiner._insert), kept so that removing
    # it does not compute them again.
    skeleton_key: str = field(default="", repr=False)
    tail_key: str | None = field(default=None, repr=False)

    @property
    def template(self) -> str:
        return render(self.tokens, self.widths)

    @property
    def key(self) -> tuple[int, str]:
        return bucket_key(self.tokens)


class PatternMiner:
    """Streaming miner over masked messages. Not thread-safe: one caller at a time."""

    def __init__(self, max_distance: float = 0.5, min_variants: int = 3, max_patterns: int = 100_000) -> None:
        if not 0.0 <= max_distance < 1.0:
            raise ValueError("max_distance must be in [0, 1)")
        if min_variants < 2:
            raise ValueError("min_variants must be at least 2")
        if max_patterns < 1:
            raise ValueError("max_patterns must be at least 1")
        self.max_distance = max_distance
        self.min_variants = min_variants
        self.max_patterns = max_patterns
        self.patterns: OrderedDict[int, Pattern] = OrderedDict()  # least recently used first
        self.aliases: OrderedDict[int, int] = OrderedDict()  # merged id -> surviving id
        self._buckets: dict[tuple[int, str], list[Pattern]] = {}
        # Patterns with a bare `<*>`, by first token: candidates for messages of another length.
        self._elastic: dict[str, list[Pattern]] = {}
        # Patterns by skeleton (optional parts dropped, see `skeleton`): the last resort before a
        # new pattern, so `sent <*> bytes (<*>),` joins `sent <*> bytes,`.
        self._skeletons: dict[str, list[Pattern]] = {}
        # Patterns whose first word looks like a name, by (token count, the other tokens): the
        # evidence that a first word varies (see `_new_shape`).
        self._tails: dict[str, list[Pattern]] = {}
        self.changed: set[int] = set()  # created or re-templated since drain_changes()
        self.merged: dict[int, int] = {}  # merged since drain_changes()
        self.evicted = 0
        self._unsaved: list[Pattern] = []  # evicted before they were stored
        # Template -> id of patterns evicted from memory (a hash and an int each, so many more
        # fit than patterns): a pattern re-learned later gets its old id back.
        self._retired: OrderedDict[int, int] = OrderedDict()

    # -- lookup -------------------------------------------------------------------------
    def resolve(self, pattern_id: int) -> int:
        for _ in range(64):
            target = self.aliases.get(pattern_id)
            if target is None:
                break
            pattern_id = target
        return pattern_id

    def get(self, pattern_id: int) -> Pattern | None:
        return self.patterns.get(self.resolve(pattern_id))

    def touch(self, pattern_id: int) -> None:
        if pattern_id in self.patterns:
            self.patterns.move_to_end(pattern_id)

    def match(self, masked: str) -> Pattern | None:
        """The pattern a message would join as it stands, without learning anything."""
        tokens, widths = tokenize(masked)
        best, distance = self._closest(tokens)
        if best is not None and distance == 0:
            return best
        found = self._align_elastic(tokens)[0]
        if found is None and _first_word_may_be_a_name(tokens):
            found = self._named_instance(tokens)
        return found or self._same_skeleton(tokens)

    def _distance(self, pattern: Pattern, tokens: list[str]) -> int | None:
        """How many constant tokens of the pattern the message differs in (None: too many)."""
        differences = 0
        allowed = int(self.max_distance * len(tokens))
        for mine, theirs in zip(pattern.tokens, tokens):
            if mine == theirs or mine == WILDCARD or token_covers(mine, theirs):
                continue
            if _enum_like(mine) and _enum_like(theirs):
                return None
            differences += 1
            if differences > allowed:
                return None
        return differences

    def _closest(self, tokens: list[str]) -> tuple[Pattern | None, int]:
        best, best_distance = None, -1
        for pattern in self._buckets.get(bucket_key(tokens), ()):
            distance = self._distance(pattern, tokens)
            if distance is None:
                continue
            if best is None or distance < best_distance or (distance == best_distance and pattern.id < best.id):
                best, best_distance = pattern, distance
                if distance == 0:
                    break  # covered as it stands: nothing closer to look for
        return best, best_distance

    def _align_elastic(self, tokens: list[str]) -> tuple[Pattern | None, list[int]]:
        """A pattern of another length whose bare `<*>` tokens absorb the extra message tokens."""
        if not tokens:
            return None, []
        last = tokens[-1]
        for pattern in self._elastic.get(bucket_key(tokens)[1], ()):
            if len(pattern.tokens) >= len(tokens) or not token_covers(pattern.tokens[-1], last):
                continue
            spans = _align(pattern.tokens, tokens)
            if spans is not None:
                return pattern, spans
        return None, []

    # -- learning -----------------------------------------------------------------------
    def add(self, masked: str, count: int = 1) -> Pattern:
        """Learn one masked message; returns the pattern it belongs to now."""
        tokens, widths = tokenize(masked)
        pattern, distance = self._closest(tokens)
        if pattern is None:
            elastic, spans = self._align_elastic(tokens)
            if elastic is not None:
                new_widths = [0 if token == WILDCARD and span != width else width
                              for token, width, span in zip(elastic.tokens, elastic.widths, spans)]
                if new_widths != elastic.widths:
                    elastic.widths = new_widths
                    self.changed.add(elastic.id)
                pattern = elastic
            else:
                pattern = self._new_shape(masked, tokens, widths)
        elif distance == 0:
            self._widen(pattern, widths)
        else:
            generalized = [generalize_token(mine, theirs) for mine, theirs in zip(pattern.tokens, tokens)]
            covered = [other for other in self._buckets.get(pattern.key, ())
                       if all(token_covers(g, t) for g, t in zip(generalized, other.tokens))]
            # Where the masking already made the message's token a value (`<*>:<*>`) covering the
            # pattern's word (`db-host:<*>`), the position is known to vary: no need to wait.
            if len(covered) + 1 >= self._variants_needed(pattern.tokens, tokens) or generalized == tokens:
                pattern = self._generalize(covered, generalized, widths)
            else:
                pattern = self._new_shape(masked, tokens, widths)
        pattern.count += count
        self.patterns.move_to_end(pattern.id)
        self._enforce_cap()
        return pattern

    def _new_shape(self, masked: str, tokens: list[str], widths: list[int]) -> Pattern:
        """No pattern of the message's bucket takes it: look across buckets before creating one.

        Buckets are keyed by the first token, so an event whose first word is a name (a program,
        `chrome.exe - <*>:<*> close, ...` / `firefox.exe - ...`) would never meet itself. When
        the first word looks like a name (lower case, see `_name_like`) and the rest is long and
        holds a value, a pattern whose first token is `<*>` takes the message if it covers the
        rest, and `min_variants` patterns that differ only in such a first word fold into one.
        Short rests (`cupsd startup succeeded`, `tickTime set to <*>`) stay apart: there the
        first word is the event.
        """
        if _first_word_may_be_a_name(tokens):
            found = self._named_instance(tokens)
            if found is not None:
                return found
            siblings = [pattern for pattern in self._tails.get(_tail_key(tokens), ()) if pattern.tokens[0] != tokens[0]]
            if len({pattern.tokens[0] for pattern in siblings}) + 1 >= self.min_variants:
                return self._fold_first_words(siblings, [WILDCARD] + tokens[1:], widths)
        return self._same_skeleton(tokens) or self._create(masked, tokens, widths)

    def _named_instance(self, tokens: list[str]) -> Pattern | None:
        """A pattern `<*> rest` that takes a message whose first word is a name."""
        for pattern in self._buckets.get((len(tokens), WILDCARD), ()):
            if self._distance(pattern, tokens) == 0:
                return pattern
        return self._same_skeleton([WILDCARD] + tokens[1:])

    def _fold_first_words(self, siblings: list[Pattern], tokens: list[str], widths: list[int]) -> Pattern:
        """Fold patterns that differ in their first word (and optional parts) into `<*> rest`;
        the smallest id survives, the others become its aliases."""
        survivor = min(siblings, key=lambda pattern: pattern.id)
        for other in siblings:
            if other is not survivor:
                self.merge(other.id, survivor.id)
        self._retemplate(survivor, tokens, list(widths))
        return self._revive(self._converge(survivor))

    def _same_skeleton(self, tokens: list[str]) -> Pattern | None:
        """A pattern that differs from the message only in optional parts (the smallest id)."""
        candidates = self._skeletons.get(skeleton(tokens))
        return min(candidates, key=lambda pattern: pattern.id) if candidates else None

    def _variants_needed(self, mine: list[str], theirs: list[str]) -> int:
        """Distinct values a position must show before it becomes `<*>`. Where the values are
        Capitalised words (`VM Paused`, `VM Resumed`), they are more often a small closed set of
        event words than a variable, so it takes twice the evidence: a closed set of lifecycle
        words stays apart, while names keep coming and fold."""
        for a, b in zip(mine, theirs):
            if a != b and not token_covers(a, b) and _title_word(a) and _title_word(b):
                return 2 * self.min_variants
        return self.min_variants

    def _create(self, seed: str, tokens: list[str], widths: list[int]) -> Pattern:
        pattern_id = pattern_id_for(seed)
        salt = 0
        # A hash collision with a pattern of another shape must not share its id.
        while pattern_id in self.patterns or pattern_id in self.aliases:
            salt += 1
            pattern_id = pattern_id_for(f"{seed}\x00{salt}")
        pattern = Pattern(id=pattern_id, tokens=tokens, widths=widths)
        self._insert(pattern)
        self.changed.add(pattern_id)
        return pattern

    def _widen(self, pattern: Pattern, widths: list[int]) -> None:
        new_widths = [0 if token == WILDCARD and mine != theirs else mine
                      for token, mine, theirs in zip(pattern.tokens, pattern.widths, widths)]
        if new_widths != pattern.widths:
            pattern.widths = new_widths
            self.changed.add(pattern.id)

    def _generalize(self, covered: list[Pattern], tokens: list[str], widths: list[int]) -> Pattern:
        """Fold every covered pattern into the one with the smallest id, with the wider template."""
        survivor = min(covered, key=lambda p: p.id)
        merged_widths = list(widths)
        for other in covered:
            merged_widths = [w if w == o else 0 for w, o in zip(merged_widths, other.widths)]
        merged_widths = [w if t == WILDCARD else 1 for t, w in zip(tokens, merged_widths)]
        for other in covered:
            if other is not survivor:
                self.merge(other.id, survivor.id)
        self._retemplate(survivor, tokens, merged_widths)
        return self._revive(self._converge(survivor))

    def _insert(self, pattern: Pattern) -> None:
        self.patterns[pattern.id] = pattern
        self._buckets.setdefault(pattern.key, []).append(pattern)
        pattern.skeleton_key = skeleton(pattern.tokens)
        self._skeletons.setdefault(pattern.skeleton_key, []).append(pattern)
        pattern.tail_key = None
        if len(pattern.tokens) > _MIN_REST and _name_like(pattern.tokens[0]):
            pattern.tail_key = _tail_key(pattern.tokens)
            self._tails.setdefault(pattern.tail_key, []).append(pattern)
        if WILDCARD in pattern.tokens[1:]:
            self._elastic.setdefault(pattern.key[1], []).append(pattern)

    def _remove(self, pattern: Pattern) -> None:
        self.patterns.pop(pattern.id, None)
        for index, key in ((self._buckets, pattern.key), (self._elastic, pattern.key[1]),
                           (self._skeletons, pattern.skeleton_key), (self._tails, pattern.tail_key)):
            bucket = index.get(key)
            if bucket is not None and pattern in bucket:
                bucket.remove(pattern)
                if not bucket:
                    del index[key]

    def _retemplate(self, pattern: Pattern, tokens: list[str], widths: list[int]) -> None:
        # Generalising can put two bare `<*>` side by side: they fold into one of unknown width.
        folded_tokens: list[str] = []
        folded_widths: list[int] = []
        for token, width in zip(tokens, widths):
            if token == WILDCARD and folded_tokens and folded_tokens[-1] == WILDCARD:
                folded_widths[-1] = 0
                continue
            folded_tokens.append(token)
            folded_widths.append(width)
        self._remove(pattern)
        pattern.tokens, pattern.widths = folded_tokens, folded_widths
        self._insert(pattern)
        self.changed.add(pattern.id)

    def _converge(self, pattern: Pattern) -> Pattern:
        """Merge the patterns this one's template now covers (the smaller id survives)."""
        for other in list(self._buckets.get(pattern.key, ())):
            if other is pattern:
                continue
            if all(token_covers(a, b) for a, b in zip(pattern.tokens, other.tokens)):
                survivor, merged = (other, pattern) if other.id < pattern.id else (pattern, other)
                if survivor is other:
                    self._retemplate(other, list(pattern.tokens), list(pattern.widths))
                self.merge(merged.id, survivor.id)
                pattern = survivor
        return pattern

    def _revive(self, pattern: Pattern) -> Pattern:
        """Give a pattern the id it had before the memory cap evicted it, if its template is back."""
        if not self._retired:
            return pattern
        old_id = self._retired.pop(_template_key(pattern.tokens), None)
        if old_id is None or old_id == pattern.id or old_id in self.patterns:
            return pattern
        new_id = pattern.id
        self._remove(pattern)
        pattern.id = old_id
        pattern.aliases.add(new_id)
        self._insert(pattern)
        for alias in list(pattern.aliases):
            self.aliases[alias] = old_id
            self.merged[alias] = old_id
        self.aliases.pop(old_id, None)
        self.changed.discard(new_id)
        self.changed.add(old_id)
        return pattern

    def merge(self, merged_id: int, survivor_id: int) -> None:
        """Make `merged_id` an alias of `survivor_id` (rows tagged earlier resolve through it)."""
        if merged_id == survivor_id:
            return
        merged = self.patterns.get(merged_id)
        survivor = self.patterns.get(survivor_id)
        if merged is not None:
            self._remove(merged)
            if survivor is not None:
                survivor.count += merged.count
                survivor.aliases |= merged.aliases | {merged_id}
                for alias in merged.aliases:
                    self.aliases[alias] = survivor_id
                    self.merged[alias] = survivor_id
        self.aliases[merged_id] = survivor_id
        self.merged[merged_id] = survivor_id
        self.changed.add(survivor_id)
        self.changed.discard(merged_id)

    def _enforce_cap(self) -> None:
        while len(self.patterns) > self.max_patterns:
            _, oldest = next(iter(self.patterns.items()))
            self._remove(oldest)
            if oldest.id in self.changed:
                # Not stored yet: keep it until the next drain_changes(), or it would be lost.
                self.changed.discard(oldest.id)
                self._unsaved.append(oldest)
            self._retired[_template_key(oldest.tokens)] = oldest.id
            self.evicted += 1
        while len(self._retired) > 4 * self.max_patterns:
            self._retired.popitem(last=False)
        while len(self.aliases) > self.max_patterns:
            self.aliases.popitem(last=False)

    # -- state exchange (store.py) -----------------------------------------------------
    def load(self, pattern_id: int, template: str) -> Pattern:
        """Adopt a pattern another replica stored; converge with ours where they cover each other."""
        pattern_id = self.resolve(pattern_id)
        tokens, widths = tokenize(template)
        existing = self.patterns.get(pattern_id)
        if existing is not None:
            if existing.tokens != tokens and len(existing.tokens) == len(tokens):
                merged = [generalize_token(a, b) for a, b in zip(existing.tokens, tokens)]
                self._retemplate(existing, merged, [min(a, b) for a, b in zip(existing.widths, widths)])
                self.changed.discard(existing.id)
                if merged != tokens:
                    self.changed.add(existing.id)
            return self._converge(existing)
        pattern = Pattern(id=pattern_id, tokens=tokens, widths=widths)
        self._insert(pattern)  # loaded last = most recently used (callers load oldest first)
        pattern = self._converge(pattern)
        self._enforce_cap()
        return pattern

    def load_alias(self, merged_id: int, survivor_id: int) -> None:
        if merged_id == survivor_id:
            return
        merged = self.patterns.get(merged_id)
        if merged is not None:
            self._remove(merged)
        self.aliases[merged_id] = survivor_id

    def drain_changes(self) -> tuple[list[Pattern], dict[int, int]]:
        """Patterns created or re-templated, and merges, since the last call."""
        changed = self._unsaved + [self.patterns[i] for i in self.changed if i in self.patterns]
        self._unsaved = []
        merged = {alias: self.resolve(target) for alias, target in self.merged.items()}
        self.changed.clear()
        self.merged.clear()
        return changed, merged


_MIN_REST = 4  # a first word may be a name only when at least this many tokens follow it


def _first_word_may_be_a_name(tokens: list[str]) -> bool:
    return len(tokens) > _MIN_REST and _name_like(tokens[0]) and any(WILDCARD in token for token in tokens)


def _name_like(token: str) -> bool:
    # A program, host or user name: starts with a lower-case letter, no value masked in it
    # (those already share the `<*>` bucket). Capitalised and UPPER_CASE first words are events.
    return token[:1].islower() and WILDCARD not in token


def _tail_key(tokens: list[str]) -> str:
    return skeleton(tokens[1:])


def _template_key(tokens: list[str]) -> int:
    return hash(" ".join(tokens))


def _align(template: list[str], tokens: list[str]) -> list[int] | None:
    """How many message tokens each template token covers, a bare `<*>` taking one or more."""
    n, m = len(template), len(tokens)
    # reach[i][j]: template[:i] covers tokens[:j]; small lists, so a plain table is fine.
    reach = [[False] * (m + 1) for _ in range(n + 1)]
    reach[0][0] = True
    for i in range(1, n + 1):
        item = template[i - 1]
        row, previous = reach[i], reach[i - 1]
        if item == WILDCARD:
            running = False
            for j in range(1, m + 1):
                running = running or previous[j - 1]
                row[j] = running
        else:
            for j in range(1, m + 1):
                row[j] = previous[j - 1] and token_covers(item, tokens[j - 1])
    if not reach[n][m]:
        return None
    spans = [0] * n
    j = m
    for i in range(n, 0, -1):
        if template[i - 1] == WILDCARD:
            k = j - 1
            while not reach[i - 1][k]:
                k -= 1
            spans[i - 1] = j - k
            j = k
        else:
            spans[i - 1] = 1
            j -= 1
    return spans

"""Compiled per-event loops: ranking the true item, and the hybrid's learning step.

Per event the engine touches a few hundred values; through numpy that is a
dozen calls of about a microsecond of overhead each, so these loops are
compiled with numba instead (compiled once, cached on disk next to this
file). Each one does in one pass what the numpy code it replaces did in
several, with the same floating-point operations in the same order: results
are bit-identical (tests/test_kernels.py compares them with the numpy
reference, storage.ranking).

No fastmath: reassociating or fusing the arithmetic would change scores in
their last bits, and with them tie-breaks and recall. For the same reason no
logarithm here comes from the C library or numpy, whose log1p differ between
CPUs: every one is storage's log1p, from the table of whole counts
(storage.log1p_table, passed in as ``table``) or compiled from its very
arithmetic (storage._logarithm.log1p_reduced).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from storage import log1p_table, logarithm

_COMPILE = {"cache": True, "nogil": True}
# numba caches a kernel by its own file's date: after editing
# storage/_logarithm.py, clear engine/__pycache__ so that the kernels pick it up
# (tests/test_logarithm.py fails on a stale cache).
_log1p_reduced = njit(**_COMPILE)(logarithm.log1p_reduced)


@njit(**_COMPILE)
def log1p(x):  # pragma: no cover - compiled
    """storage.log1p of one float64, compiled: the same bits."""
    if not (math.fabs(x) >= logarithm.TINY and -1.0 < x < np.inf):
        if math.fabs(x) < logarithm.TINY:
            return x
        if x == -1.0:
            return -np.inf
        return np.inf if x == np.inf else np.nan
    hi = 1.0 + x
    mantissa, exponent = math.frexp(hi)
    return _log1p_reduced(x, hi, mantissa, np.float64(exponent))


@njit(**_COMPILE)
def log1p_count(table, count):  # pragma: no cover - compiled
    """storage.log1p of a (float32) count as float64: ``table`` (log1p_table) for whole ones."""
    if 0.0 <= count < table.shape[0]:
        whole = int(count)
        if whole == count:
            return table[whole]
    return log1p(np.float64(count))


@njit(**_COMPILE)
def count_rank(scores, item, known):  # pragma: no cover - compiled
    """(items scoring above ``item``, items level with it, candidates), known items left out.

    ``scores`` (n_items,) float, ``known`` (k,) int64 item indices (the true
    item among them stays a candidate). Equals rank_of's counts.
    """
    target = scores[item]
    greater = 0
    ties = -1  # the item itself
    for j in range(scores.shape[0]):
        value = scores[j]
        if value > target:
            greater += 1
        elif value == target:
            ties += 1
    candidates = scores.shape[0]
    for j in known:
        if j == item:
            continue
        value = scores[j]
        if value > target:
            greater -= 1
        elif value == target:
            ties -= 1
        candidates -= 1
    return greater, ties, candidates


@njit(**_COMPILE)
def known_above(values, item, known):  # pragma: no cover - compiled
    """(known items above ``item``, known items level with it), the item itself left out."""
    target = values[item]
    greater = 0
    ties = 0
    for j in known:
        if j == item:
            continue
        value = values[j]
        if value > target:
            greater += 1
        elif value == target:
            ties += 1
    return greater, ties


@njit(**_COMPILE)
def session_rank(
    n, base, recent, weights, neighbour_ids, neighbour_counts, table, large, scratch, item, known
):  # pragma: no cover - compiled
    """count_rank() of the hybrid's scores for the first ``n`` items, without building them.

    score(j) = base[j] + sum over the user's recent items l of weights[l] *
    log(1 + neighbour_counts[l, slot of j]) -- storage.ranking's "session"
    rule for the user's stage, summed in the order numpy's bincount sums it.
    ``neighbour_ids`` holds index + 1 (0 in unused slots, which come last);
    ``table`` is storage.log1p_table(); ``large[0]`` is 0 while every count is
    a whole number within the table (then it holds every logarithm, and the
    loop needs no check per slot, which halves its time); ``scratch`` is
    (n + 1,) or more float64 zeros, returned zeroed.
    """
    m = neighbour_ids.shape[1]
    small = large[0] == 0
    for r in range(recent.shape[0]):
        row = recent[r]
        weight = weights[r]
        if small:
            for slot in range(m):
                neighbour = neighbour_ids[row, slot]
                if neighbour == 0:
                    break
                scratch[neighbour] += table[int(neighbour_counts[row, slot])] * weight
        else:
            for slot in range(m):
                neighbour = neighbour_ids[row, slot]
                if neighbour == 0:
                    break
                scratch[neighbour] += log1p_count(table, neighbour_counts[row, slot]) * weight
    target = base[item] + scratch[item + 1]
    greater = 0
    ties = -1
    for j in range(n):
        value = base[j] + scratch[j + 1]
        if value > target:
            greater += 1
        elif value == target:
            ties += 1
    candidates = n
    for j in known:
        if j == item:
            continue
        value = base[j] + scratch[j + 1]
        if value > target:
            greater -= 1
        elif value == target:
            ties -= 1
        candidates -= 1
    for r in range(recent.shape[0]):
        row = recent[r]
        for slot in range(m):
            neighbour = neighbour_ids[row, slot]
            if neighbour == 0:
                break
            scratch[neighbour] = 0.0
    return greater, ties, candidates


@njit(**_COMPILE)
def learn_session(
    item,
    stage,
    known,
    n_newest,
    newest,
    window,
    stage_weight,
    table,
    counts,
    stage_counts,
    log_stages,
    base,
    neighbour_ids,
    neighbour_counts,
    filled,
    touched,
    large,
    recent,
    n_recent,
    likes,
    likes_state,
):  # pragma: no cover - compiled
    """The hybrid's learning step for one liked ``item`` (see engine.models.hybrid).

    Takes the user's ``n_newest`` newest items other than ``item`` from the
    end of ``known`` (int64, oldest first) into ``newest`` (newest first).
    Counts the item at the user's ``stage`` and among the latest likes,
    refreshes its base scores (``base`` is stage-major), and counts a
    co-occurrence both ways with each of the first ``window`` newest items
    (Space-Saving rows of ``neighbour_ids``, index + 1, ``filled`` slots
    used per item), flagging the items whose rows changed in ``touched``,
    and ``large[0]`` once a count reaches the last of ``table``
    (storage.log1p_table()). Then writes the
    user's row of recent items: ``item`` and the newest, ``n_recent`` in all.

    ``likes`` is the ring of the latest positive events' items and
    ``likes_state`` its [next slot, slots filled]; ``counts`` counts the
    items in it (with an empty ring, every like ever). The item that leaves
    the ring has its count lowered and is flagged too.
    """
    taken = 0
    position = known.shape[0] - 1
    while taken < n_newest and position >= 0:
        if known[position] != item:
            newest[taken] = known[position]
            taken += 1
        position -= 1
    size = likes.shape[0]
    if size:
        slot = likes_state[0]
        if likes_state[1] == size:
            left = likes[slot]
            counts[left] -= 1.0
            _refresh_base(left, counts, log_stages, base, stage_weight, table)
            touched[left] = 1
        else:
            likes_state[1] += 1
        likes[slot] = item
        likes_state[0] = (slot + 1) % size
    counts[item] += 1.0
    stage_counts[item, stage] += 1.0
    log_stages[item, stage] = log1p_count(table, stage_counts[item, stage])
    _refresh_base(item, counts, log_stages, base, stage_weight, table)
    touched[item] = 1
    for t in range(min(window, taken)):
        other = newest[t]
        highest = max(
            _add_neighbour(item, other, neighbour_ids, neighbour_counts, filled),
            _add_neighbour(other, item, neighbour_ids, neighbour_counts, filled),
        )
        if highest >= table.shape[0] - 1:
            large[0] = 1
        touched[other] = 1
    if n_recent:
        recent[0] = item
    for k in range(1, n_recent):
        recent[k] = newest[k - 1]


@njit(**_COMPILE)
def _refresh_base(
    item, counts, log_stages, base, stage_weight, table
):  # pragma: no cover - compiled
    """Recompute ``item``'s base score at every stage from its count."""
    log_count = log1p_count(table, counts[item])
    for s in range(base.shape[0]):
        # The store's order of operations: log(1 + b) + w * log(1 + stage count).
        base[s, item] = log_count + stage_weight * log_stages[item, s]


@njit(**_COMPILE)
def session_observe(
    evaluate,
    n,
    rank_stage,
    n_active,
    weights,
    table,
    scratch,
    popular_counts,
    item,
    learn_stage,
    known,
    n_newest,
    newest,
    window,
    stage_weight,
    counts,
    stage_counts,
    log_stages,
    base,
    neighbour_ids,
    neighbour_counts,
    filled,
    touched,
    large,
    recent,
    n_recent,
    likes,
    likes_state,
):  # pragma: no cover - compiled
    """Test-then-learn one event in one call: session_rank(), known_above(), then learn_session().

    When ``evaluate``, ranks ``item`` for the user as they are (stage
    ``rank_stage``, the first ``n_active`` items of ``recent`` weighted by
    ``weights``) among the first ``n`` items, ``known`` (then every item of
    the user) left out, and counts the known items above and level with it
    in ``popular_counts``; then learns the event. Returns (greater, ties,
    candidates, popular known greater, popular known ties); zeros when not
    ``evaluate``.
    """
    greater, ties, candidates, known_greater, known_ties = 0, 0, 0, 0, 0
    if evaluate:
        greater, ties, candidates = session_rank(
            n,
            base[rank_stage],
            recent[:n_active],
            weights,
            neighbour_ids,
            neighbour_counts,
            table,
            large,
            scratch,
            item,
            known,
        )
        known_greater, known_ties = known_above(popular_counts, item, known)
    learn_session(
        item,
        learn_stage,
        known,
        n_newest,
        newest,
        window,
        stage_weight,
        table,
        counts,
        stage_counts,
        log_stages,
        base,
        neighbour_ids,
        neighbour_counts,
        filled,
        touched,
        large,
        recent,
        n_recent,
        likes,
        likes_state,
    )
    return greater, ties, candidates, known_greater, known_ties


@njit(**_COMPILE)
def session_run(
    users,
    items,
    evaluate,
    times,
    seqs,
    first,
    results,
    n_items,
    n_total,
    user_stage,
    user_active,
    active_of,
    weights,
    newest_items,
    row_items,
    stage_edges,
    table,
    scratch,
    newest,
    window,
    stage_weight,
    counts,
    stage_counts,
    log_stages,
    base,
    neighbour_ids,
    neighbour_counts,
    filled,
    touched,
    large,
    recent,
    likes,
    likes_state,
    popular_counts,
    popular_at,
    popular_above,
    popular_state,
    limit,
    pool,
    starts,
    lengths,
    capacities,
    user_touched,
    history_state,
    log_users,
    log_items,
    log_times,
    log_seqs,
    log_added,
):  # pragma: no cover - compiled
    """Test-then-learn the positive events ``first`` .. end of a run, in order, in one call.

    Per event: session_observe() on the user's history as it stands (the
    pool's slice, oldest first), the baseline's counts for the event's
    item, then popularity_add() and history_add(), as
    StreamProcessor.observe does one event at a time. ``results[e]`` gets
    (greater, ties, candidates, baseline greater, baseline ties) of
    evaluated events. ``n_items[e]`` is the number of items registered by
    event ``e`` (the run's ids are registered before it is learned: the
    ones first seen later are not candidates yet), ``n_total`` all of them.
    ``weights`` is (row_items + 1, row_items): row ``a`` holds the weights
    of ``a`` active items. Returns the index of the
    first event not learned: the end, or an event whose user's history
    needs more pool than is left (the caller grows it and goes on from there).
    """
    for e in range(first, users.shape[0]):
        user, item = users[e], items[e]
        if history_room(user, item, limit, pool, starts, lengths, capacities, history_state) < 0:
            return e
        start, n_known = starts[user], lengths[user]
        known = pool[start : start + n_known]
        in_known = 0
        for k in range(n_known):
            if known[k] == item:
                in_known = 1
                break
        n_newest = min(newest_items, n_known - in_known)
        active = active_of[min(1 + n_newest, row_items)]
        a = user_active[user]
        greater, ties, candidates, known_greater, known_ties = session_observe(
            evaluate[e],
            n_items[e],
            user_stage[user],
            a,
            weights[a, :a],
            table,
            scratch,
            popular_counts,
            item,
            np.searchsorted(stage_edges, n_known, side="right"),
            known,
            n_newest,
            newest,
            window,
            stage_weight,
            counts,
            stage_counts,
            log_stages,
            base,
            neighbour_ids,
            neighbour_counts,
            filled,
            touched,
            large,
            recent[user],
            active,
            likes,
            likes_state,
        )
        if evaluate[e]:
            count = int(popular_counts[item])
            results[e, 0] = greater
            results[e, 1] = ties
            results[e, 2] = candidates
            results[e, 3] = popular_above[count] - known_greater
            results[e, 4] = popular_at[count] - 1 - known_ties
            if count == 0:  # items registered later in the run have no events either
                results[e, 4] -= n_total - n_items[e]
        popularity_add(item, popular_counts, popular_at, popular_above, popular_state)
        history_add(
            user,
            item,
            times[e],
            seqs[e],
            limit,
            pool,
            starts,
            lengths,
            capacities,
            user_touched,
            history_state,
            log_users,
            log_items,
            log_times,
            log_seqs,
            log_added,
        )
        user_stage[user] = np.searchsorted(stage_edges, n_known + 1 - in_known, side="right")
        user_active[user] = active
    return users.shape[0]


@njit(**_COMPILE)
def popularity_add(item, counts, at, above, state):  # pragma: no cover - compiled
    """Count one positive event of ``item`` (engine.models.baseline); ``state[0]`` is the top count.

    ``at`` and ``above`` must reach index ``state[0] + 1``.
    """
    count = int(counts[item])
    counts[item] = count + 1.0
    at[count] -= 1
    at[count + 1] += 1
    above[count] += 1
    if count + 1 > state[0]:
        state[0] = count + 1


@njit(**_COMPILE)
def history_room(
    user, item, limit, pool, starts, lengths, capacities, state
):  # pragma: no cover - compiled
    """Where history_add() would put ``user``'s new item: its block's start, or -1 if no room.

    A full block moves to the end of the pool, twice as large (at most
    ``limit``): -1 when the pool (``state[0]`` slots used) cannot take it.
    """
    start, length = starts[user], lengths[user]
    if length < capacities[user] or length == limit:
        return start
    for k in range(length):
        if pool[start + k] == item:
            return start  # a re-interaction: it moves within the block
    size = min(limit, max(4, 2 * capacities[user]))
    if state[0] + size > pool.shape[0]:
        return -1
    return state[0]


@njit(**_COMPILE)
def history_add(
    user,
    item,
    time,
    seq,
    limit,
    pool,
    starts,
    lengths,
    capacities,
    touched,
    state,
    log_users,
    log_items,
    log_times,
    log_seqs,
    log_added,
):  # pragma: no cover - compiled
    """Make ``item`` the newest of ``user``'s items (engine.models.history), and log what changed.

    An item seen before moves to the end; with ``limit`` items already the
    oldest goes (logged as removed). The caller checked history_room() and
    leaves two free log entries. ``state`` is [pool slots used, log
    entries, users touched since the last drain].
    """
    start, length = starts[user], lengths[user]
    position = -1
    for k in range(length):
        if pool[start + k] == item:
            position = k
            break
    if position < 0 and length == limit:
        position = 0  # the oldest makes room
        entry = state[1]
        log_users[entry] = user
        log_items[entry] = pool[start]
        log_added[entry] = 0
        state[1] = entry + 1
    if position >= 0:
        for k in range(position, length - 1):
            pool[start + k] = pool[start + k + 1]
        length -= 1
    elif length == capacities[user]:
        moved = history_room(user, item, limit, pool, starts, lengths, capacities, state)
        size = min(limit, max(4, 2 * capacities[user]))
        for k in range(length):
            pool[moved + k] = pool[start + k]
        start = moved
        starts[user] = moved
        capacities[user] = size
        state[0] = moved + size
    pool[start + length] = item
    lengths[user] = length + 1
    entry = state[1]
    log_users[entry] = user
    log_items[entry] = item
    log_times[entry] = time
    log_seqs[entry] = seq
    log_added[entry] = 1
    state[1] = entry + 1
    if not touched[user]:
        touched[user] = 1
        state[2] += 1


@njit(**_COMPILE)
def _add_neighbour(item, neighbour, ids, counts, filled):  # pragma: no cover - compiled
    """Count one co-occurrence in ``item``'s row (a full row replaces its weakest); the new count."""
    m = ids.shape[1]
    used = filled[item]
    key = neighbour + 1
    slot = -1
    for k in range(used):
        if ids[item, k] == key:
            slot = k
            break
    if slot < 0:
        if used < m:
            slot = used
            filled[item] = used + 1
        else:
            # The newcomer inherits the weakest count, so a neighbour that
            # keeps coming back climbs (Space-Saving, Metwally et al. 2005).
            slot = 0
            for k in range(1, m):
                if counts[item, k] < counts[item, slot]:
                    slot = k
        ids[item, slot] = key
    counts[item, slot] += 1.0
    return counts[item, slot]


@njit(**_COMPILE)
def _best_n(scores, n, best, best_scores):  # pragma: no cover - compiled
    """Fill ``best`` with the indices of the ``n`` best finite-or-+inf scores; returns how many.

    One pass keeping a sorted buffer of n: an item enters only if it beats
    the buffer's last, so most of a large catalogue costs one comparison.
    Ties go to the lower index, as storage.ranking.top_n (an equal score
    later in the array never displaces an earlier one). -inf is unavailable.
    """
    size = 0
    for i in range(scores.shape[0]):
        value = scores[i]
        if value == -np.inf or value != value:  # excluded, or NaN
            continue
        if size == n:
            if value <= best_scores[n - 1]:
                continue
            slot = n - 1
        else:
            slot = size
            size += 1
        while slot > 0 and best_scores[slot - 1] < value:
            best_scores[slot] = best_scores[slot - 1]
            best[slot] = best[slot - 1]
            slot -= 1
        best_scores[slot] = value
        best[slot] = i
    return size


def top_n(
    scores: np.ndarray, n: int, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """storage.ranking.top_n's answer (same items, order and scores) in one compiled pass.

    It runs on every live API request and for the drift panel's 50 lists at
    every checkpoint. Measured here: 3.5 us against 13 us for 1,447 items,
    0.12-0.22 ms against 0.29-0.36 ms for 98,000.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if exclude is not None and len(exclude):
        scores = scores.copy()
        scores[exclude] = -np.inf
    n = max(0, min(n, len(scores)))
    best = np.empty(n, dtype=np.int64)
    best_scores = np.empty(n, dtype=np.float64)
    size = _best_n(scores, n, best, best_scores) if n else 0
    return best[:size], best_scores[:size]


def warm_up() -> None:
    """Compile (or load from the cache) every kernel now rather than on the first event."""
    scores = np.zeros(2)
    known = np.zeros(1, dtype=np.int64)
    top_n(scores, 1)
    count_rank(scores, 0, known)
    known_above(np.zeros(2, dtype=np.float32), 0, known)
    base = np.zeros((2, 2))
    ids = np.zeros((2, 2), dtype=np.int32)
    counts = np.zeros((2, 2), dtype=np.float32)
    recent = np.zeros(1, dtype=np.int32)
    large = np.zeros(1, dtype=np.uint8)
    table = log1p_table()
    log1p_count(table, np.float32(0.5))
    session_rank(2, base[0], recent, np.ones(1), ids, counts, table, large, np.zeros(3), 0, known)
    session_observe(
        True,
        2,
        0,
        1,
        np.ones(1),
        table,
        np.zeros(3),
        np.zeros(2, dtype=np.float32),
        0,
        0,
        np.ones(1, dtype=np.int64),
        1,
        np.zeros(1, dtype=np.int64),
        1,
        0.5,
        np.zeros(2, dtype=np.float32),
        np.zeros((2, 2), dtype=np.float32),
        np.zeros((2, 2)),
        base,
        ids,
        counts,
        np.zeros(2, dtype=np.int32),
        np.zeros(2, dtype=np.uint8),
        large,
        np.zeros(2, dtype=np.int32),
        1,
        np.zeros(1, dtype=np.int32),
        np.zeros(2, dtype=np.int64),
    )
    # The run kernel and the history's and baseline's steps, with exactly the
    # argument types the engine passes: through a throwaway processor.
    from engine.processing.processor import ProcessorConfig, StreamProcessor
    from engine.sources.events import Interaction

    for model in ("hybrid", "popular"):
        processor = StreamProcessor(ProcessorConfig(model=model, panel_size=0))
        processor.observe_all([Interaction("u", "a", 5.0, 0.0), Interaction("u", "b", 5.0, 1.0)])

"""The hybrid model's step in compiled code: rank the true item, learn the event, a whole run."""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.kernels._compile import COMPILE
from engine.kernels.counts import history_add, history_room, popularity_add
from engine.kernels.logarithm import log1p_count
from engine.kernels.ranking import known_above


@njit(**COMPILE)
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


@njit(**COMPILE)
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


@njit(**COMPILE)
def _refresh_base(
    item, counts, log_stages, base, stage_weight, table
):  # pragma: no cover - compiled
    """Recompute ``item``'s base score at every stage from its count."""
    log_count = log1p_count(table, counts[item])
    for s in range(base.shape[0]):
        # The store's order of operations: log(1 + b) + w * log(1 + stage count).
        base[s, item] = log_count + stage_weight * log_stages[item, s]


@njit(**COMPILE)
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


@njit(**COMPILE)
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
    shared,
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

    ``shared[e]`` gets what event ``e`` added to the item statistics, for
    the other workers of a deployment (session_apply()): the user's stage,
    how many of their newest items it paired the item with, and those items,
    newest first.
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
        learn_stage = np.searchsorted(stage_edges, n_known, side="right")
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
            recent[user],
            active,
            likes,
            likes_state,
        )
        paired = min(window, n_newest)
        shared[e, 0] = learn_stage
        shared[e, 1] = paired
        for t in range(paired):
            shared[e, 2 + t] = newest[t]
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


@njit(**COMPILE)
def session_apply(
    items,
    shared,
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
    likes,
    likes_state,
    paired_items,
    newest,
    no_row,
    popular_counts,
    popular_at,
    popular_above,
    popular_state,
):  # pragma: no cover - compiled
    """Add other workers' events to the item statistics, as learn_session() added them there.

    Event ``e`` liked ``items[e]``; ``shared[e]`` is session_run()'s record
    of it (stage, number of paired items, the paired items newest first, as
    this worker's indices). The same counts, stage counts, co-occurrences
    and latest likes change as on the worker that owns the user, and the
    baseline counts the item; no user row changes (``no_row`` is empty).
    ``paired_items`` and ``newest`` are scratch of ``window`` int64 each.
    """
    for e in range(items.shape[0]):
        item = items[e]
        paired = shared[e, 1]
        # learn_session() takes the newest items from the end of an oldest-first list.
        for t in range(paired):
            paired_items[paired - 1 - t] = shared[e, 2 + t]
        learn_session(
            item,
            shared[e, 0],
            paired_items[:paired],
            paired,
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
            no_row,
            0,
            likes,
            likes_state,
        )
        popularity_add(item, popular_counts, popular_at, popular_above, popular_state)


@njit(**COMPILE)
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

"""The counts the engine keeps per event, in compiled code: the baseline's and the histories'."""

from __future__ import annotations

from numba import njit

from engine.kernels._compile import COMPILE


@njit(**COMPILE)
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


@njit(**COMPILE)
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


@njit(**COMPILE)
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

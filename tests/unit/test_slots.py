import multiprocessing
import time

from fishflow.speaking.slots import open_slot, try_lock, unlock


def _hold(directory, slots, seconds, starts):
    fds = [open_slot(directory, index) for index in range(slots)]
    while not (held := [fd for fd in fds if try_lock(fd)][:1]):
        time.sleep(0.01)
    for fd in fds:
        if fd not in held:
            unlock(fd)  # only one slot per holder
    starts.append(time.monotonic())
    time.sleep(seconds)
    unlock(held[0])


def test_at_most_n_holders_at_once_across_processes(tmp_path):
    with multiprocessing.Manager() as manager:
        starts = manager.list()
        workers = [
            multiprocessing.Process(target=_hold, args=(tmp_path, 2, 0.4, starts)) for _ in range(4)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=10)
        times = sorted(starts)
    assert len(times) == 4
    # Two start at once, the other two only after the first pair has let go.
    assert times[1] - times[0] < 0.3
    assert times[2] - times[0] >= 0.35


def test_descriptors_of_one_process_exclude_each_other_until_unlocked(tmp_path):
    # Threads of one generation job hold their own descriptors of the same slot.
    first, second = open_slot(tmp_path, 0), open_slot(tmp_path, 0)
    assert try_lock(first)
    assert not try_lock(second)
    unlock(first)
    assert try_lock(second)
    unlock(second)


def test_the_kernel_releases_the_slots_of_a_killed_holder(tmp_path):
    holder = multiprocessing.Process(target=_hold, args=(tmp_path, 1, 60, []))
    holder.start()
    probe = open_slot(tmp_path, 0)
    deadline = time.monotonic() + 10
    while try_lock(probe) and time.monotonic() < deadline:
        unlock(probe)  # the holder has not taken it yet
        time.sleep(0.01)
    assert not try_lock(probe)
    holder.kill()
    holder.join(timeout=10)
    assert try_lock(probe)
    unlock(probe)

import multiprocessing
import time

from fishflow.slots import release, try_acquire


def _any(directory, slots):
    return next((fd for i in range(slots) if (fd := try_acquire(directory, i)) is not None), None)


def _hold(directory, slots, seconds, starts):
    while (fd := _any(directory, slots)) is None:
        time.sleep(0.01)
    starts.append(time.monotonic())
    time.sleep(seconds)
    release(fd)


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


def test_a_released_slot_is_free_again(tmp_path):
    first = try_acquire(tmp_path, 0)
    assert first is not None
    assert try_acquire(tmp_path, 0) is None
    release(first)
    again = try_acquire(tmp_path, 0)
    assert again is not None
    release(again)


def test_the_kernel_releases_the_slots_of_a_killed_holder(tmp_path):
    holder = multiprocessing.Process(target=_hold, args=(tmp_path, 1, 60, []))
    holder.start()
    deadline = time.monotonic() + 10
    while (fd := try_acquire(tmp_path, 0)) is not None and time.monotonic() < deadline:
        release(fd)  # the holder has not taken it yet
        time.sleep(0.01)
    assert try_acquire(tmp_path, 0) is None
    holder.kill()
    holder.join(timeout=10)
    fd = try_acquire(tmp_path, 0)
    assert fd is not None
    release(fd)

import multiprocessing
import time

from fishflow.slots import slot


def _hold(directory, slots, seconds, starts):
    with slot(directory, slots):
        starts.append(time.monotonic())
        time.sleep(seconds)


def test_at_most_n_holders_at_once(tmp_path):
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


def test_a_slot_is_free_again_after_use(tmp_path):
    with slot(tmp_path, 1) as first:
        assert first == 0
    with slot(tmp_path, 1) as again:
        assert again == 0

"""When a Deployment's payload sweep is due (controller.payload_sweep.SweepSchedule): once after the start, again
only after a failed removal, retried with a doubling backoff, and a Warning earned by the third failure in a row."""

from __future__ import annotations

from deploymind.controller.payload_sweep import WARN_AFTER, SweepSchedule


def test_a_sweep_is_due_once_after_the_start_and_then_only_when_a_call_left_something_behind() -> None:
    schedule = SweepSchedule()
    assert schedule.due(0.0, left_behind=False)

    schedule.succeeded()

    assert not schedule.due(10.0, left_behind=False)  # a warm update or a tick costs no sweep
    assert schedule.due(10.0, left_behind=True)


def test_failures_back_off_doubling_to_the_cap_and_only_the_third_in_a_row_earns_a_warning() -> None:
    schedule = SweepSchedule()
    now, waits, warnings = 0.0, [], []
    for _ in range(WARN_AFTER + 2):
        assert schedule.due(now, left_behind=False)
        warnings.append(schedule.failed(now, initial_s=2.0, max_s=5.0))
        assert not schedule.due(now + 1.0, left_behind=True)  # backing off, whatever is left
        waits.append(schedule.retry_at - now)
        now = schedule.retry_at

    assert waits == [2.0, 4.0, 5.0, 5.0, 5.0]
    assert warnings == [False, False, True, False, False]
    schedule.succeeded()
    assert not schedule.due(now, left_behind=False)
    assert schedule.failed(now, initial_s=2.0, max_s=5.0) is False  # a new streak starts from one

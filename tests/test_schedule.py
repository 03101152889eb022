"""The training schedule without training: where a resumed run starts, when it saves, evaluates and stops."""
from trainers.schedule import DEBUG_STEPS, TrainingSchedule


def schedule(steps_per_epoch=3, total_epochs=2, save_latest_freq=100, save_epoch_freq=1, eval_freq=None,
             max_steps=0, debug=False, print_freq=2, display_freq=5):
    return TrainingSchedule(steps_per_epoch, total_epochs, print_freq, display_freq, save_latest_freq,
                            save_epoch_freq, eval_freq=eval_freq, max_steps=max_steps, debug=debug)


def simulate(s, start=(1, 0), global_step=0):
    """Drive ``s`` as run_training does; returns the events ``(kind, epoch, epoch_iter, step)`` in order."""
    events, step = [], global_step
    for epoch in s.epochs(start[0]):
        first = s.first_iter(epoch, start)
        epoch_iter, stopped = first, False
        for _ in range(s.steps_per_epoch - first):
            step += 1
            epoch_iter += 1
            act = s.after_step(step, epoch, epoch_iter, first)
            events += [(k, epoch, epoch_iter, step) for k in ("print_losses", "display", "evaluate", "save_latest")
                       if getattr(act, k)]
            if act.end_epoch:
                stopped = act.stop
                break
        end = s.after_epoch(epoch, epoch_iter, step, stopped)
        events += [(k, epoch, epoch_iter, step) for k in ("save_latest", "save_snapshot", "report") if getattr(end, k)]
        if end.stop:
            break
    return events


def of(events, kind):
    return [(e, i, s) for k, e, i, s in events if k == kind]


def test_resumed_run_starts_where_the_state_was_saved():
    s = schedule(steps_per_epoch=3)
    assert s.start() == (1, 0)
    assert s.start((2, 1)) == (2, 1)   # inside epoch 2
    assert s.start((1, 3)) == (2, 0)   # saved at the end of epoch 1: the next epoch
    assert s.start((2, 5)) == (3, 0)   # an epoch snapshot resumed with more batches per epoch
    assert list(s.epochs(3)) == []     # the run of 2 epochs is done
    assert s.first_iter(2, (2, 1)) == 1 and s.first_iter(3, (2, 1)) == 0


def test_total_steps_counts_resumed_debug_and_max_steps_runs():
    assert schedule(steps_per_epoch=3, total_epochs=2).total_steps((1, 0), 0) == 6
    assert schedule(steps_per_epoch=3, total_epochs=2).total_steps((2, 1), 4) == 2
    assert schedule(steps_per_epoch=3, total_epochs=4, max_steps=5).total_steps((1, 0), 0) == 5
    assert schedule(steps_per_epoch=3, total_epochs=4, max_steps=5).total_steps((2, 1), 4) == 1
    # a limit already reached still takes one step, then stops
    assert schedule(steps_per_epoch=3, total_epochs=4, max_steps=2).total_steps((2, 1), 4) == 1
    assert schedule(steps_per_epoch=10, total_epochs=2, debug=True).total_steps((1, 0), 0) == 2 * DEBUG_STEPS
    assert schedule(steps_per_epoch=3, total_epochs=2).total_steps((3, 0), 6) == 0
    # the simulated runs take exactly that many steps
    for s, start, g in ((schedule(total_epochs=4, max_steps=5), (1, 0), 0), (schedule(), (2, 1), 4),
                        (schedule(steps_per_epoch=10, debug=True), (1, 0), 0)):
        steps = [step for _, _, _, step in simulate(s, start, g)]
        assert max(steps) - g == schedule(s.steps_per_epoch, s.total_epochs, max_steps=s.max_steps,
                                          debug=s.debug).total_steps(start, g)


def test_max_steps_stops_inside_an_epoch_with_one_latest_save_and_no_snapshot():
    events = simulate(schedule(steps_per_epoch=3, total_epochs=4, max_steps=4))
    assert of(events, "save_latest") == [(1, 3, 3), (2, 1, 4)]  # with epoch 1's snapshot; at the stop
    assert of(events, "save_snapshot") == [(1, 3, 3)]  # epoch 1 only; epoch 2 was not finished
    assert of(events, "report") == [(1, 3, 3)]
    assert max(step for *_, step in events) == 4


def test_max_steps_at_an_epoch_end_saves_latest_once_then_the_snapshot():
    events = simulate(schedule(steps_per_epoch=3, total_epochs=4, max_steps=3))
    assert of(events, "save_latest") == [(1, 3, 3)]   # at the stop; not again at the epoch's end
    assert of(events, "save_snapshot") == [(1, 3, 3)]
    assert [k for k, *_ in events if k in ("save_latest", "save_snapshot")] == ["save_latest", "save_snapshot"]


def test_latest_saved_by_frequency_is_not_written_again_at_the_epoch_end():
    events = simulate(schedule(steps_per_epoch=3, total_epochs=2, save_latest_freq=3, save_epoch_freq=1))
    assert of(events, "save_latest") == [(1, 3, 3), (2, 3, 6)]  # once per state
    events = simulate(schedule(steps_per_epoch=3, total_epochs=2, save_latest_freq=2, save_epoch_freq=1))
    assert of(events, "save_latest") == [(1, 2, 2), (1, 3, 3), (2, 1, 4), (2, 3, 6)]
    # epochs that are not snapshot epochs save nothing at their end (the last epoch always does)
    events = simulate(schedule(steps_per_epoch=2, total_epochs=5, save_epoch_freq=2))
    assert [e for e, _, _ in of(events, "save_snapshot")] == [2, 4, 5]
    assert [e for e, _, _ in of(events, "save_latest")] == [2, 4, 5]


def test_resumed_run_continues_the_same_schedule():
    straight = simulate(schedule(steps_per_epoch=3, total_epochs=2, save_latest_freq=2, eval_freq=2))
    first = simulate(schedule(steps_per_epoch=3, total_epochs=2, save_latest_freq=2, eval_freq=2, max_steps=4))
    resumed = simulate(schedule(steps_per_epoch=3, total_epochs=2, save_latest_freq=2, eval_freq=2),
                       start=(2, 1), global_step=4)
    assert [e for e in straight if e[3] > 4] == [e for e in resumed]
    assert [e for e in straight if e[3] <= 4 and e[0] != "report" and e[0] != "save_snapshot"] == \
           [e for e in first if e[0] != "report" and e[0] != "save_snapshot"]


def test_evaluation_every_eval_freq_and_after_the_last_step_once():
    events = simulate(schedule(steps_per_epoch=3, total_epochs=2, eval_freq=4))
    assert [s for *_, s in of(events, "evaluate")] == [4, 6]  # 6: the last step
    events = simulate(schedule(steps_per_epoch=3, total_epochs=2, eval_freq=3))
    assert [s for *_, s in of(events, "evaluate")] == [3, 6]  # the last step is not evaluated twice
    events = simulate(schedule(steps_per_epoch=3, total_epochs=4, eval_freq=10, max_steps=5))
    assert [s for *_, s in of(events, "evaluate")] == [5]  # the stop is the last step
    assert of(simulate(schedule(eval_freq=None)), "evaluate") == []


def test_debug_leaves_each_epoch_after_a_few_steps_and_goes_on():
    events = simulate(schedule(steps_per_epoch=10, total_epochs=2, debug=True))
    assert of(events, "save_snapshot") == [(1, DEBUG_STEPS, DEBUG_STEPS), (2, DEBUG_STEPS, 2 * DEBUG_STEPS)]
    assert of(events, "report") == of(events, "save_snapshot")


def test_print_and_display_follow_the_global_step():
    events = simulate(schedule(steps_per_epoch=3, total_epochs=2, print_freq=2, display_freq=5))
    assert [s for *_, s in of(events, "print_losses")] == [2, 4, 6]
    assert [s for *_, s in of(events, "display")] == [5]


def test_latest_of_a_snapshot_epochs_last_step_is_written_with_the_snapshot_at_the_epoch_end():
    s = schedule(steps_per_epoch=3, total_epochs=2, save_latest_freq=3, save_epoch_freq=1)
    assert not s.after_step(3, 1, 3, 0).save_latest  # waits for the epoch's end
    end = s.after_epoch(1, 3, 3, stopped=False)
    assert end.save_latest and end.save_snapshot  # the snapshot's networks first, then latest and its state
    s = schedule(steps_per_epoch=3, total_epochs=4, save_latest_freq=3, save_epoch_freq=2)
    assert s.after_step(3, 1, 3, 0).save_latest  # epoch 1 writes no snapshot: latest at the step
    end = s.after_epoch(1, 3, 3, stopped=False)
    assert not end.save_latest and not end.save_snapshot
    # --debug leaves the epoch early: a latest saved at that step is not written again with the snapshot
    s = schedule(steps_per_epoch=10, total_epochs=2, save_latest_freq=3, save_epoch_freq=1, debug=True)
    act = s.after_step(3, 1, 3, 0)
    assert act.save_latest and act.end_epoch and not act.stop
    end = s.after_epoch(1, 3, 3, stopped=False)
    assert end.save_snapshot and not end.save_latest


def test_epoch_summary_after_long_epochs_snapshots_and_the_last_epoch_only():
    short = simulate(schedule(steps_per_epoch=2, total_epochs=7, print_freq=5, save_epoch_freq=3))
    assert [e for e, _, _ in of(short, "report")] == [3, 6, 7]
    assert [e for e, _, _ in of(short, "report")] == [e for e, _, _ in of(short, "save_snapshot")]
    stopped = simulate(schedule(steps_per_epoch=2, total_epochs=9, print_freq=5, save_epoch_freq=4, max_steps=6))
    assert of(stopped, "report") == [(3, 2, 6)]  # the stop at an epoch's end (no snapshot due there)
    long = simulate(schedule(steps_per_epoch=5, total_epochs=3, print_freq=5, save_epoch_freq=10))
    assert [e for e, _, _ in of(long, "report")] == [1, 2, 3]

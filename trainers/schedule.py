"""When a training run prints, displays, saves, evaluates and stops, and where a resumed run starts.

Epochs are 1-based, ``epoch_iter`` counts the batches done in the current
epoch and ``step`` is the global step (batches over the whole run) after the
step just taken. :class:`TrainingSchedule` holds no tensors and reads no
clock; :func:`trainers.loop.run_training` asks it after every step
(:meth:`TrainingSchedule.after_step`) and every epoch
(:meth:`TrainingSchedule.after_epoch`).
"""
from dataclasses import dataclass

DEBUG_STEPS = 3  # --debug: steps per epoch


@dataclass(frozen=True)
class StepActions:
    """What to do after one step: each field a bool."""
    print_losses: bool
    display: bool
    evaluate: bool
    save_latest: bool
    end_epoch: bool  # leave the epoch now (--max_steps reached, or --debug's steps done)
    stop: bool       # and the run (--max_steps reached)


@dataclass(frozen=True)
class EpochActions:
    """What to do at the end of an epoch: each field a bool."""
    save_latest: bool    # the full training state with the snapshot's networks, unless this step's was saved
    save_snapshot: bool  # the snapshot is due: ``{epoch}_net_*.pth`` (networks only)
    report: bool         # print the epoch's summary line (long epochs, snapshots and the last epoch)
    stop: bool           # the run ends after this epoch's actions


class TrainingSchedule:
    """The run's schedule, from the frequencies of the options.

    Args:
        steps_per_epoch: batches per epoch (per process, every rank the same).
        total_epochs: ``niter + niter_decay``.
        print_freq, display_freq, save_latest_freq, save_epoch_freq: in global steps
            (``save_epoch_freq`` in epochs).
        eval_freq: evaluate every this many global steps and after the last
            step; None without an evaluator.
        max_steps: stop once the global step reaches it (0: no limit).
        debug: leave each epoch after :data:`DEBUG_STEPS` steps.
    """

    def __init__(self, steps_per_epoch, total_epochs, print_freq, display_freq, save_latest_freq,
                 save_epoch_freq, eval_freq=None, max_steps=0, debug=False):
        self.steps_per_epoch, self.total_epochs = int(steps_per_epoch), int(total_epochs)
        self.print_freq, self.display_freq = int(print_freq), int(display_freq)
        self.save_latest_freq, self.save_epoch_freq = int(save_latest_freq), int(save_epoch_freq)
        self.eval_freq = None if eval_freq is None else int(eval_freq)
        self.max_steps, self.debug = int(max_steps or 0), bool(debug)
        self.latest_saved_at = None  # global step of the last 'latest' save (never twice for one state)
        self.evaluated_at = None     # global step of the last evaluation

    @classmethod
    def from_options(cls, opt, steps_per_epoch, evaluate=False):
        """The schedule of training options ``opt``; ``evaluate``: an evaluator runs (``--eval_freq``)."""
        return cls(steps_per_epoch, opt.niter + opt.niter_decay, opt.print_freq, opt.display_freq,
                   opt.save_latest_freq, opt.save_epoch_freq, eval_freq=opt.eval_freq if evaluate else None,
                   max_steps=opt.max_steps, debug=opt.debug)

    # ------------------------------------------------------------ where a run starts
    def start(self, resumed=None):
        """``(epoch, epoch_iter)`` where training starts; ``resumed``: the loaded ``(epoch, epoch_iter)``.

        A state saved at the end of an epoch (``epoch_iter >= steps_per_epoch``)
        starts the next epoch; a new run starts at ``(1, 0)``.
        """
        if resumed is None:
            return 1, 0
        epoch, epoch_iter = int(resumed[0]), int(resumed[1])
        return (epoch + 1, 0) if epoch_iter >= self.steps_per_epoch else (epoch, epoch_iter)

    def epochs(self, start_epoch):
        """The epochs the run goes through from ``start_epoch`` (a range; empty when the run is done)."""
        return range(start_epoch, self.total_epochs + 1)

    def first_iter(self, epoch, start):
        """Batches already done in ``epoch`` when it begins: the resumed position's in its epoch, else 0."""
        return start[1] if epoch == start[0] else 0

    def epoch_steps(self, first):
        """Steps taken in an epoch that begins with ``first`` batches done (before --max_steps)."""
        left = max(0, self.steps_per_epoch - first)
        return min(left, DEBUG_STEPS) if self.debug else left

    def total_steps(self, start, global_step):
        """Steps this run takes from position ``start`` at ``global_step`` (the progress bar's total)."""
        steps = sum(self.epoch_steps(self.first_iter(e, start)) for e in self.epochs(start[0]))
        if self.max_steps and steps:
            steps = min(steps, max(1, self.max_steps - int(global_step)))  # one step at least, then the stop
        return steps

    def snapshot_due(self, epoch):
        """True when the end of ``epoch`` writes its snapshot ``{epoch}_net_*.pth`` (every ``save_epoch_freq``
        epochs and the last, as the release did)."""
        return epoch % self.save_epoch_freq == 0 or epoch == self.total_epochs

    # ------------------------------------------------------------ during the run
    def after_step(self, step, epoch, epoch_iter, first):
        """The :class:`StepActions` after global ``step``, batch ``epoch_iter`` of ``epoch`` (begun at ``first``)."""
        max_reached = bool(self.max_steps) and step >= self.max_steps
        last = max_reached or (epoch == self.total_epochs and epoch_iter >= self.steps_per_epoch)
        evaluate = (self.eval_freq is not None and step != self.evaluated_at
                    and (step % self.eval_freq == 0 or last))
        if evaluate:
            self.evaluated_at = step
        # the save of a snapshot epoch's last step waits for the epoch's end, where the snapshot is written first
        save_latest = (step % self.save_latest_freq == 0 or max_reached) and not (
            epoch_iter >= self.steps_per_epoch and self.snapshot_due(epoch))
        if save_latest:
            self.latest_saved_at = step
        debug_done = self.debug and epoch_iter - first >= DEBUG_STEPS
        return StepActions(print_losses=step % self.print_freq == 0, display=step % self.display_freq == 0,
                           evaluate=evaluate, save_latest=save_latest, end_epoch=max_reached or debug_done,
                           stop=max_reached)

    def after_epoch(self, epoch, epoch_iter, step, stopped):
        """The :class:`EpochActions` at the end of ``epoch`` at global ``step`` (``stopped``: by --max_steps).

        A run stopped inside an epoch saves nothing more (its 'latest' is
        written at the stop) and prints no epoch summary. At a snapshot epoch,
        'latest' is written with the snapshot (``save_latest``) unless this
        step's state was saved already; then the snapshot alone. The summary
        line is printed after an epoch of at least ``print_freq`` steps, at a
        snapshot and at the end of the run, so short epochs do not fill the
        terminal.
        """
        if stopped and epoch_iter < self.steps_per_epoch:
            return EpochActions(save_latest=False, save_snapshot=False, report=False, stop=True)
        snapshot = self.snapshot_due(epoch)
        save_latest = snapshot and self.latest_saved_at != step
        if save_latest:
            self.latest_saved_at = step
        steps = min(self.steps_per_epoch, DEBUG_STEPS) if self.debug else self.steps_per_epoch
        report = snapshot or stopped or steps >= self.print_freq  # the last epoch is a snapshot epoch
        return EpochActions(save_latest=save_latest, save_snapshot=snapshot, report=report, stop=bool(stopped))

"""The training loop: batches through the trainer, in the order the schedule gives.

:func:`run_training` is called on every rank with the same schedule; the
collectives (loss averaging at a print, evaluation, saving) happen at the
same steps everywhere. One progress bar (rank 0) counts the run's steps and
shows the time left.
"""
import time

from tqdm import tqdm

from util import distributed as dist_util


def run_training(trainer, loader, schedule, start, visualizer, evaluator=None, log=print):
    """Train from position ``start`` = ``(epoch, epoch_iter)`` until the schedule stops; returns the last epoch.

    ``trainer``: a :class:`trainers.superstylenet_trainer.SuperStyleNetTrainer`;
    ``loader``: the training loader (``sampler`` with ``set_epoch`` /
    ``set_start_batch``, ``dataset`` with ``set_epoch``); ``schedule``: a
    :class:`trainers.schedule.TrainingSchedule`; ``visualizer``: a
    :class:`trainers.visualizer.Visualizer` (disabled off rank 0);
    ``evaluator``: a :class:`trainers.evaluator.TrainingEvaluator` or None.
    """
    main_process = dist_util.is_main_process()
    sampler, dataset = loader.sampler, loader.dataset
    total = schedule.total_steps(start, trainer.global_step)
    bar = tqdm(total=trainer.global_step + total, initial=trainer.global_step, unit="step", disable=not main_process,
               dynamic_ncols=True)
    epoch = start[0]
    last_print, steps_since_print = time.time(), 0
    for epoch in schedule.epochs(start[0]):
        first = schedule.first_iter(epoch, start)
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        sampler.set_start_batch(first)
        trainer.set_epoch_lr(epoch)
        bar.set_description(f"epoch {epoch}/{schedule.total_epochs}")
        epoch_start, epoch_iter, stopped = time.time(), first, False
        for data in loader:
            trainer.train_step(data)
            epoch_iter += 1
            steps_since_print += 1
            bar.update(1)
            step = trainer.global_step
            act = schedule.after_step(step, epoch, epoch_iter, first)
            if act.print_losses:
                # the only point where losses are read back from the device (one sync per print)
                losses = dist_util.all_reduce_mean(trainer.latest_losses())
                now = time.time()
                t = (now - last_print) / (steps_since_print * trainer.opt.batchSize)  # s per image since the last
                last_print, steps_since_print = now, 0
                if main_process:
                    visualizer.print_current_errors(epoch, epoch_iter, losses, t, step=step)
                    visualizer.plot_current_errors(losses, step)
                    visualizer.plot_speed(trainer.optimizer_G.param_groups[0]["lr"],
                                          trainer.optimizer_D.param_groups[0]["lr"], t * trainer.opt.batchSize,
                                          trainer.opt.batchSize, step)
            if act.display and main_process and trainer.generated is not None:
                visualizer.display_current_results(
                    {"input_label": data["label"], "synthesized_image": trainer.generated,
                     "real_image": data["image"]}, epoch, step)
            if act.evaluate and evaluator is not None:
                evaluate(trainer, evaluator, epoch, epoch_iter, visualizer if main_process else None)
            if act.save_latest:
                trainer.save("latest", epoch, epoch_iter)  # on every rank (each one's RNG state); rank 0 writes
            if act.end_epoch:
                stopped = act.stop
                break
        end = schedule.after_epoch(epoch, epoch_iter, trainer.global_step, stopped)
        if end.save_latest:
            # the snapshot's networks (no training state), then latest_*, then the state saying the epoch is done
            trainer.save("latest", epoch, epoch_iter, snapshot=str(epoch))
        elif end.save_snapshot:
            trainer.save(str(epoch), epoch, epoch_iter, save_state=False)  # networks only (no training state)
        if end.report and main_process:
            bar.write(f"end of epoch {epoch}/{schedule.total_epochs}: {time.time() - epoch_start:.1f} s, "
                      f"lr {trainer.current_lr:.3g}")
        if end.stop:
            break
        dist_util.barrier()
    bar.close()
    return epoch


def evaluate(trainer, evaluator, epoch, epoch_iter, visualizer=None):
    """Score the raw and the EMA generator (on every rank, sharded); log on rank 0 (``visualizer``)."""
    generators = {"raw": trainer.model.netG, "ema": trainer.ema_generator()}  # the EMA prepared (or None)
    result = evaluator.run(trainer.global_step, epoch, generators, trainer.generator_inputs)
    if visualizer is not None:
        visualizer.print_eval(epoch, epoch_iter, trainer.global_step, result.values, result.count,
                              [f"{k} {evaluator.metric}" for k in result.improved])
        visualizer.plot_eval(result.values, trainer.global_step)
    return result

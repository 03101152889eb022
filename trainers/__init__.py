"""Trainers: :class:`trainers.superstylenet_trainer.SuperStyleNetTrainer`."""

"""Command-line options: :class:`BaseOptions`, :class:`TrainOptions`, :class:`TestOptions`."""

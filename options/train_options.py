"""Training options (SPADE / SuperStyleNet release flag names and defaults)."""
from options.base_options import BaseOptions
from trainers import ema, evaluator, parallel
from util.distributed import planned_world_size
from util.errors import OptionError
from util.flag_rules import HALF_OPEN_UNIT, POSITIVE, at_least, set_rules


class TrainOptions(BaseOptions):
    """Flags of ``train.py``: data order, logging, checkpointing, optimisation and schedule."""

    is_train = True
    description = "SuperStyleNet training"

    def initialize(self, parser):
        """Add the training flags to ``parser`` and return it."""
        parser = super().initialize(parser)
        g = parser.add_argument_group("training data")
        g.add_argument("--serial_batches", action="store_true", help="take images in order (no shuffling)")
        g.add_argument("--no_flip", action="store_true", help="no horizontal flip for data augmentation")
        g.add_argument("--load_from_opt_file", action="store_true",
                       help="take the architecture flags from checkpoints_dir/name/opt.json, as test.py does")

        g = parser.add_argument_group("logging and checkpoints")
        g.add_argument("--display_freq", type=int, default=100,
                       help="frequency (iterations) of writing samples to the HTML page / tensorboard")
        g.add_argument("--print_freq", type=int, default=100,
                       help="frequency (iterations) of printing losses to the console and loss_log.txt")
        g.add_argument("--save_latest_freq", type=int, default=5000,
                       help="frequency (iterations) of saving the latest checkpoint and training state")
        g.add_argument("--save_epoch_freq", type=int, default=10,
                       help="frequency (epochs) of saving epoch checkpoints")
        g.add_argument("--no_html", action="store_true",
                       help="do not write training samples to checkpoints_dir/name/web/")
        g.add_argument("--tf_log", action="store_true", default=True,
                       help="write TensorBoard events (losses, learning rates, speed, evaluation, samples) to "
                            "checkpoints_dir/name/logs")
        g.add_argument("--no_tf_log", dest="tf_log", action="store_false", help="write no TensorBoard events")
        g.add_argument("--debug", action="store_true", help="only do a few iterations per epoch")
        g.add_argument("--ignore_disk_space", action="store_true",
                       help="start even when the checkpoints this run will write (latest and every epoch "
                            "snapshot) exceed the free disk space")
        g.add_argument("--take_over_lock", action="store_true",
                       help="take over checkpoints_dir/name/run.lock held by a run on another machine "
                            "(only once that run has ended; a lock of this machine's ended runs is taken "
                            "over anyway)")
        set_rules(g, display_freq=at_least(1), print_freq=at_least(1), save_latest_freq=at_least(1),
                  save_epoch_freq=at_least(1))

        g = parser.add_argument_group("training")
        g.add_argument("--continue_train", action="store_true",
                       help="resume exactly from the saved training state of --which_epoch")
        g.add_argument("--init_from", type=str, default=None,
                       help="fine-tune: start a new run from the plain weights <which_epoch>_net_G.pth (and "
                            "<which_epoch>_net_D.pth when present) in this folder, this project's or the "
                            "original release's; optimisers, schedule and step count start afresh")
        g.add_argument("--niter", type=int, default=50, help="epochs at the initial learning rate")
        g.add_argument("--niter_decay", type=int, default=150,
                       help="epochs over which the learning rate decays linearly to zero")
        g.add_argument("--max_steps", type=int, default=0,
                       help="stop after this many global iterations (0: no limit), saving the latest state")
        g.add_argument("--beta1", type=float, default=0.0, help="Adam beta1 (used with --no_TTUR)")
        g.add_argument("--beta2", type=float, default=0.9, help="Adam beta2 (used with --no_TTUR)")
        g.add_argument("--no_TTUR", action="store_true",
                       help="same lr for G and D with (beta1, beta2); default is TTUR: "
                            "G lr/2, D 2*lr, betas (0, 0.9)")
        g.add_argument("--lr", type=float, default=0.0002, help="initial learning rate for Adam")
        g.add_argument("--D_steps_per_G", type=int, default=1,
                       help="number of discriminator updates per generator update")
        set_rules(g, niter=at_least(0), niter_decay=at_least(0), max_steps=at_least(0), beta1=HALF_OPEN_UNIT,
                  beta2=HALF_OPEN_UNIT, lr=POSITIVE, D_steps_per_G=at_least(1))

        g = parser.add_argument_group("speed (see docs/training.md, 'GPU training')")
        g.add_argument("--amp", action="store_true",
                       help="mixed precision: bfloat16 autocast where the GPU supports it, else float16 with a "
                            "gradient scaler; on the CPU float32 unless --amp_dtype is given")
        g.add_argument("--amp_dtype", type=str, default="auto", choices=("auto", "bfloat16", "float16"),
                       help="autocast dtype for --amp (auto: bfloat16 if supported on CUDA, else float16; "
                            "float32 on the CPU)")
        g.add_argument("--channels_last", action="store_true",
                       help="keep weights and image tensors in the channels-last (NHWC) memory format")
        g.add_argument("--compile", action="store_true",
                       help="torch.compile G, D and the VGG loss (the first steps compile: minutes at ngf 64)")
        g.add_argument("--compile_backend", type=str, default="inductor",
                       help="torch.compile backend for --compile (torch._dynamo.list_backends(); aot_eager "
                            "traces without generating code)")
        g.add_argument("--cpu_processes", type=int, default=1,
                       help="with --gpu_ids -1: train in this many CPU processes (DistributedDataParallel over "
                            "gloo; --batchSize stays the global batch). Several --gpu_ids start one process per id")
        set_rules(g, cpu_processes=at_least(1))
        parser = parallel.modify_commandline_options(parser, self.is_train)
        parser = ema.modify_commandline_options(parser, self.is_train)
        parser = evaluator.modify_commandline_options(parser, self.is_train)
        return parser

    def validate(self, opt):
        """Training-specific checks on top of :meth:`BaseOptions.validate`."""
        super().validate(opt)  # each flag's own range: set_rules next to the flag, checked when parsing
        if opt.niter + opt.niter_decay < 1:
            raise OptionError("--niter + --niter_decay must be at least 1 epoch")
        if opt.continue_train and opt.init_from:
            raise OptionError("--continue_train resumes this run; --init_from starts a new one from other "
                              "weights: give one of them")
        if opt.output_nc != 3 and not opt.no_vgg_loss:
            raise OptionError(f"--output_nc {opt.output_nc}: the VGG perceptual loss needs RGB images; "
                              "pass --no_vgg_loss")
        self.validate_processes(opt)

    @staticmethod
    def validate_processes(opt):
        """--cpu_processes and the global batch against the number of training processes."""
        if opt.cpu_processes > 1 and opt.gpu_ids:
            raise OptionError(f"--cpu_processes {opt.cpu_processes} needs --gpu_ids -1 "
                              f"(several --gpu_ids already start one process per GPU)")
        world = planned_world_size(opt)
        if opt.batchSize % world:
            raise OptionError(f"--batchSize {opt.batchSize} is the global batch and must be divisible by the "
                              f"number of processes ({world})")

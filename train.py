"""Train Noise2Same (defaults: the original train.py: BSD68, 3000 steps, batch 64, patch 64,
lmbd 2, model trained_models/N2S-3000, seed 666).

    python train.py                                   # the original run (demo set when BSD68 is absent)
    python train.py --dataset demo --filters 16 --steps 600 --batch-size 16 --name demo-N2S
    python train.py --strategy mirrored               # the global batch split over all local GPUs
"""
from typing import List, Optional

from utils import cli


def main(argv: Optional[List[str]] = None) -> None:
    p = cli.parser(__doc__, name='N2S-3000')
    cli.add_training_flags(p, steps_help='global step to stop at (default: 3000 for bsd68 and '
                                         'demo, the data set\'s otherwise)')
    args = p.parse_args(argv)
    dataset = cli.resolve_dataset(args)
    settings = cli.training_settings(args, dataset)
    images, validation = dataset.training_data(args.data_dir)
    cli.start_tensorflow(training=True)
    distribution = cli.distribution(args)  # before the first model: it may split the CPU
    from models import Noise2Same

    cli.seed_everything(args.seed)
    model = Noise2Same(args.model_dir, args.name, lmbd=settings['lmbd'],
                       masking=settings['masking'], mask_perc=settings['mask_perc'],
                       **cli.model_kwargs(args, dataset))
    trained = model.train(images, settings['patch_size'], validation=validation,
                          batch_size=settings['batch_size'], save_steps=args.save_steps,
                          log_steps=args.log_steps, steps=args.steps or dataset.training['steps'],
                          seed=args.seed, init_from=args.init_from, **distribution)
    cli.exit_if_nothing_trained(trained)


if __name__ == '__main__':
    cli.run(main)

"""Train Noise2Same (defaults: the original train.py: BSD68, 3000 steps, batch 64, patch 64,
lmbd 2, model trained_models/N2S-3000, seed 666).

    python train.py                                   # the original run (demo set when BSD68 is absent)
    python train.py --images my_photos/ --name mine --filters 32 --batch-size 16 --steps 2000
    python train.py --dataset demo --filters 16 --steps 600 --batch-size 16 --name demo-N2S
    python train.py --name demo-N2S --steps 1200      # continue it: saved settings are kept
    python train.py --strategy mirrored               # the global batch split over all local GPUs

Continuing a model (its directory holds one) keeps every setting it saved: a flag left out
means the saved value, and a flag that would change one is refused with a one-line error.
"""
from typing import Callable, List, Optional

from n2s_app import cli, train_plan
from utils.core.settings import SEED


def main(argv: Optional[List[str]] = None,
         on_step: Optional[Callable[[int, int], None]] = None) -> None:
    """Parse argv (None: the command line) and train; on_step: `Noise2Same.train`'s callback
    (the napari plugin's progress bar and cancel button)."""
    p = cli.parser(__doc__, name='N2S-3000')
    cli.add_training_flags(p, steps_help='global step to stop at (default: the saved run\'s, '
                                         'else 3000 for bsd68 and demo, the data set\'s otherwise)')
    args = p.parse_args(argv)
    saved = train_plan.saved_settings(args)
    dataset = train_plan.resolve_dataset(args, saved)
    settings = train_plan.training_settings(args, dataset, saved)
    record = train_plan.dataset_record(dataset, saved)
    images, validation = train_plan.training_data(dataset, args.data_dir, settings['patch_size'],
                                                  record)
    cli.start_tensorflow(training=True)
    distribution = train_plan.distribution(args)  # before the first model: it may split the CPU
    from models import Noise2Same

    cli.seed_everything(SEED if settings['seed'] is None else settings['seed'])
    model = Noise2Same(args.model_dir, args.name, lmbd=settings['lmbd'],
                       masking=settings['masking'], mask_perc=settings['mask_perc'],
                       opt_config=settings['opt_config'], **train_plan.model_kwargs(args, dataset))
    trained = model.train(images, settings['patch_size'], validation=validation,
                          batch_size=settings['batch_size'], save_steps=args.save_steps,
                          log_steps=args.log_steps, steps=settings['steps'],
                          seed=settings['seed'], init_from=args.init_from,
                          record=record,
                          keep_checkpoints=args.keep_checkpoints, on_step=on_step,
                          **distribution)
    cli.exit_if_nothing_trained(trained)


if __name__ == '__main__':
    cli.run(main)

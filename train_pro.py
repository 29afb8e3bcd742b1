"""Train Noise2SamePro in two phases: Noise2Same up to step steps - pro_steps, then the N2SP loss
on the same checkpoint up to step `steps` (defaults: the original train_pro.py: 8000 steps of
which 500 N2SP, model trained_models/N2S_PRO-8000-2, BSD68, batch 64, patch 64, seed 666).

    python train_pro.py
    python train_pro.py --init-from trained_models/N2S_BSD68 --steps 500 --pro-steps 500

Continuing a model keeps every setting it saved (train.py's --help says how).
"""
from typing import Callable, List, Optional

from n2s_app import cli, train_plan
from utils.core.settings import SEED, resolve_run


def main(argv: Optional[List[str]] = None,
         on_step: Optional[Callable[[int, int], None]] = None) -> None:
    """Parse argv (None: the command line) and train both phases; on_step:
    `Noise2Same.train`'s callback (the napari plugin's progress bar and cancel button)."""
    p = cli.parser(__doc__, name='N2S_PRO-8000-2')
    cli.add_training_flags(p, steps_help='global step to stop at (default: the saved run\'s, '
                                         'else 8000 for bsd68 and demo, the data set\'s otherwise)')
    p.add_argument('--pro-steps', type=cli.positive_int, default=None,
                   help='steps of the second (N2SP) phase, at the end of --steps (default: the '
                        'saved run\'s, else 500)')
    p.add_argument('--no-sigma-grad', action='store_true',
                   help='stop the gradient through the N2SP sigma estimate (original: off)')
    p.add_argument('--no-guard', action='store_true',
                   help='the original N2SP loss; by default the sigma estimate is floored at its '
                        'value when phase two starts, which prevents a collapse to the identity')
    p.add_argument('--per-image', action='store_true',
                   help='N2SP phase: one sigma estimate per image of the batch, for training '
                        'images of mixed noise levels (not in the original)')
    args = p.parse_args(argv)
    saved = train_plan.saved_settings(args)
    dataset = train_plan.resolve_dataset(args, saved)
    settings = train_plan.training_settings(args, dataset, saved, steps_key='pro_total')
    steps, record = settings['steps'], saved.get('training', {})
    pro_steps = resolve_run('pro_steps', args.pro_steps, record, dataset.training['pro_steps'],
                            '--pro-steps')
    if pro_steps > steps:
        raise ValueError(f"--pro-steps {pro_steps} exceeds --steps {steps}")
    record = train_plan.dataset_record(dataset, saved)
    images, validation = train_plan.training_data(dataset, args.data_dir, settings['patch_size'],
                                                  record)
    cli.start_tensorflow(training=True)
    from models import Noise2Same, Noise2SamePro
    fit = dict(validation=validation, batch_size=settings['batch_size'],
               save_steps=args.save_steps, log_steps=args.log_steps, seed=settings['seed'],
               keep_checkpoints=args.keep_checkpoints, on_step=on_step,
               record={**record, 'pro_total': steps, 'pro_steps': pro_steps},
               **train_plan.distribution(args))
    common = dict(masking=settings['masking'], mask_perc=settings['mask_perc'],
                  opt_config=settings['opt_config'], **train_plan.model_kwargs(args, dataset))

    cli.seed_everything(SEED if settings['seed'] is None else settings['seed'])
    init_from, trained = args.init_from, 0
    if steps > pro_steps:  # phase one: Noise2Same
        model = Noise2Same(args.model_dir, args.name, lmbd=settings['lmbd'], **common)
        trained += model.train(images, settings['patch_size'], steps=steps - pro_steps,
                               init_from=init_from, **fit)
        init_from = None
    # phase two: the same checkpoint (weights, optimizer state, step) with the N2SP loss
    model = Noise2SamePro(args.model_dir, args.name,
                          sigma_grad=False if args.no_sigma_grad else None,
                          guard=False if args.no_guard else None,
                          per_image=True if args.per_image else None, **common)
    trained += model.train(images, settings['patch_size'], steps=steps, init_from=init_from, **fit)
    cli.exit_if_nothing_trained(trained)


if __name__ == '__main__':
    cli.run(main)

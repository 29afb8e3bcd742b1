"""Train Noise2SamePro in two phases: Noise2Same up to step steps - pro_steps, then the N2SP loss
on the same checkpoint up to step `steps` (defaults: the original train_pro.py: 8000 steps of
which 500 N2SP, model trained_models/N2S_PRO-8000-2, BSD68, batch 64, patch 64, seed 666).

    python train_pro.py
    python train_pro.py --init-from trained_models/N2S_BSD68 --steps 500 --pro-steps 500
"""
from typing import List, Optional

from utils import cli


def main(argv: Optional[List[str]] = None) -> None:
    p = cli.parser(__doc__, name='N2S_PRO-8000-2')
    cli.add_training_flags(p, steps_help='global step to stop at (default: 8000 for bsd68 and '
                                         'demo, the data set\'s otherwise)')
    p.add_argument('--pro-steps', type=cli.positive_int, default=500,
                   help='steps of the second (N2SP) phase, at the end of --steps')
    p.add_argument('--no-sigma-grad', action='store_true',
                   help='stop the gradient through the N2SP sigma estimate (original: off)')
    p.add_argument('--no-guard', action='store_true',
                   help='the original N2SP loss; by default the sigma estimate is floored at its '
                        'value when phase two starts, which prevents a collapse to the identity')
    args = p.parse_args(argv)
    dataset = cli.resolve_dataset(args)
    settings = cli.training_settings(args, dataset)
    steps = args.steps or dataset.training['pro_total']
    if args.pro_steps > steps:
        raise ValueError(f"--pro-steps {args.pro_steps} exceeds --steps {steps}")
    images, validation = dataset.training_data(args.data_dir)
    cli.start_tensorflow(training=True)
    from models import Noise2Same, Noise2SamePro
    fit = dict(validation=validation, batch_size=settings['batch_size'],
               save_steps=args.save_steps, log_steps=args.log_steps, seed=args.seed,
               **cli.distribution(args))
    common = dict(masking=settings['masking'], mask_perc=settings['mask_perc'],
                  **cli.model_kwargs(args, dataset))

    cli.seed_everything(args.seed)
    init_from, trained = args.init_from, 0
    if steps > args.pro_steps:  # phase one: Noise2Same
        model = Noise2Same(args.model_dir, args.name, lmbd=settings['lmbd'], **common)
        trained += model.train(images, settings['patch_size'], steps=steps - args.pro_steps,
                               init_from=init_from, **fit)
        init_from = None
    # phase two: the same checkpoint (weights, optimizer state, step) with the N2SP loss
    model = Noise2SamePro(args.model_dir, args.name, sigma_grad=not args.no_sigma_grad,
                          guard=not args.no_guard, **common)
    trained += model.train(images, settings['patch_size'], steps=steps, init_from=init_from, **fit)
    cli.exit_if_nothing_trained(trained)


if __name__ == '__main__':
    cli.run(main)

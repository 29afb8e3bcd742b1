"""Per image, on noise the refinement was not tuned on: how many of BSD68's 68 test images come
back below their noisy input and below the network alone: by default the model test_single.py
picks per image without --name (`blind32-N2S`, `mixed32-N2S` for very noisy images), with
--name that model for every image.

    python download.py --dataset bsd68 --from ../shared/data/bsd68
    python -m benchmarks.untuned                  # about 3 minutes on 2 cores

Noise draws: default_rng([77, image index]). Prints one line per noise kind.
"""
import argparse
import os
from typing import Callable, Dict

import numpy as np

from n2s_app import cli
from utils.data.bsd68_build import poisson_gaussian
from utils.evaluation.metrics import PSNR

NOISES: Dict[str, Callable] = {
    'clipped 8-bit sigma 25': lambda c, r: np.clip(np.round(c + r.normal(0, 25, c.shape)), 0, 255),
    'clipped 8-bit sigma 50': lambda c, r: np.clip(np.round(c + r.normal(0, 50, c.shape)), 0, 255),
    'Gaussian sigma 7': lambda c, r: c + r.normal(0, 7, c.shape),
    'Poisson peak 50, read 1': lambda c, r: poisson_gaussian(c, 50, 1.0, r),
}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model-dir', default=cli.MODEL_DIR)
    p.add_argument('--name', default=None,
                   help="one model for every image (default: test_single.py's choice per image)")
    p.add_argument('--data-dir', default=cli.DATA_DIR)
    args = p.parse_args(argv)
    cli.start_tensorflow(training=False)
    from models import load_model
    from n2s_app.model_source import default_model_for
    from utils.core.noise import measured_noise
    predictors: Dict = {}

    def predictor_for(x):
        name = args.name or default_model_for(measured_noise(x), args.model_dir)
        if name not in predictors:
            predictors[name] = load_model(args.model_dir, name).restored_predictor()
        return name, predictors[name]
    clean = np.load(os.path.join(args.data_dir, 'BSD68', 'test', 'bsd68_groundtruth.npy'),
                    allow_pickle=True)
    for noise, make in NOISES.items():
        scores, names = [], []
        for i, c in enumerate(clean):
            c = np.asarray(c, np.float64)
            x = make(c, np.random.default_rng([77, i]))
            name, predictor = predictor_for(x)
            network = predictor.predict(x)
            refined, _ = predictor.refine(x, network, plain=True)  # as predict(refine=True)
            scores.append([PSNR(c, y) for y in (x, network, refined)])
            names.append(name)
        s = np.array(scores)
        used = ', '.join(f'{n} on {names.count(n)}' for n in sorted(set(names)))
        print(f"{noise}: input {s[:, 0].mean():.2f}, network {s[:, 1].mean():.2f}, refined "
              f"{s[:, 2].mean():.2f} dB; refined below the input on {(s[:, 2] < s[:, 0]).sum()}"
              f"/{len(s)} (worst {(s[:, 2] - s[:, 0]).min():+.2f}), below the network on "
              f"{(s[:, 2] < s[:, 1]).sum()}/{len(s)} (worst {(s[:, 2] - s[:, 1]).min():+.2f}); "
              f"{used}", flush=True)


if __name__ == '__main__':
    main()

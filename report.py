"""The report of `make demo`: noisy input, NLM (scikit-image), the trained N2S and N2SP models and
the default shipped model as test_single.py runs it (refined) on the demo test images; prints one
table and writes it (markdown and CSV) under results/demo/.

    python report.py --n2s demo-N2S --n2sp demo-N2SP
"""
import os
from typing import List, Optional

from n2s_app import cli
from n2s_app.model_source import default_model_for
from utils.core.noise import measured_noise
from utils.core.files import write_csv_atomic, write_text_atomic
from utils.data.datasets import get_dataset
from utils.evaluation.baselines import nlm
from utils.evaluation.metrics import score_denoiser


def main(argv: Optional[List[str]] = None) -> None:
    p = cli.new_parser(__doc__)
    p.add_argument('--data-dir', default=cli.DATA_DIR, help='folder of the data sets')
    p.add_argument('--model-dir', default=cli.MODEL_DIR, help='folder of the model directories')
    p.add_argument('--dataset', default='demo', help='data set whose test images are scored')
    p.add_argument('--n2s', default='demo-N2S', help='Noise2Same model name')
    p.add_argument('--n2sp', default='demo-N2SP', help='Noise2SamePro model name')
    p.add_argument('--default', default=None,
                   help=f"a model scored as test_single.py runs it (default: test_single.py's "
                        f"own choice per image, {cli.DEFAULT_MODEL} and {cli.NOISY_MODEL} for "
                        f"very noisy images)")
    p.add_argument('--out', default='results/demo', help='folder of table.md and table.csv')
    args = p.parse_args(argv)
    cli.start_tensorflow(training=False)
    from models import Noise2Same, load_model

    dataset = get_dataset(args.dataset, args.data_dir)
    images = dataset.test_images(args.data_dir)
    for name in (args.n2s, args.n2sp, args.default or cli.DEFAULT_MODEL):
        cli.require_checkpoint(args.model_dir, name, 'make demo')
    methods = {'noisy input': lambda x: x, 'NLM (scikit-image)': nlm}
    for label, name in (('Noise2Same', args.n2s), ('Noise2SamePro', args.n2sp)):
        methods[f'{label} ({name})'] = Noise2Same(args.model_dir, name).predict
    loaded = {}

    def as_test_single(x):  # test_single.py without --name chooses the model per image
        name = args.default or default_model_for(measured_noise(x), args.model_dir)
        if name not in loaded:
            loaded[name] = load_model(args.model_dir, name)
        return loaded[name].predict(x, refine=cli.DEFAULT_REFINE)
    default = args.default or f'{cli.DEFAULT_MODEL} ({cli.NOISY_MODEL} above {cli.NOISY_ABOVE})'
    methods[f"shipped {default}, as test_single.py runs it"
            f"{' (refined)' if cli.DEFAULT_REFINE else ''}"] = as_test_single

    rows = []
    for method, denoise in methods.items():
        score = score_denoiser(denoise, images)
        rows.append({'method': method, 'psnr_db': round(score['psnr'], 2),
                     'ssim': round(score['ssim'], 4),
                     'seconds_per_image': round(score['seconds'], 3)})

    lines = [f"Demo test set ({dataset.name}: {', '.join(im.name for im in images)}; "
             f"{len(images)} images, Gaussian sigma 25)", '',
             '| method | PSNR (dB) | SSIM | s / image |', '|---|---|---|---|']
    lines += [f"| {r['method']} | {r['psnr_db']:.2f} | {r['ssim']:.4f} | "
              f"{r['seconds_per_image']:.3f} |" for r in rows]
    table = '\n'.join(lines)
    print(table)
    os.makedirs(args.out, exist_ok=True)
    write_text_atomic(os.path.join(args.out, 'table.md'), table + '\n')
    write_csv_atomic(os.path.join(args.out, 'table.csv'), rows)


if __name__ == '__main__':
    cli.run(main)

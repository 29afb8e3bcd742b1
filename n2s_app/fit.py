"""Record the training noise range of a model trained before it was recorded, or recorded by an
earlier estimator (settings.json training.relative_noise, which the model-fit note of
utils/evaluation/fit.py reads).

    python -m n2s_app.fit trained_models/bsd68-N2S
"""
from typing import List, Optional

from n2s_app import cli
from utils.core.settings import SETTINGS_FILE, read_settings, write_settings
from utils.data.datasets import get_dataset
from utils.data.user_images import from_files
from utils.evaluation.fit import record_noise_range


def main(argv: Optional[List[str]] = None) -> None:
    p = cli.new_parser(__doc__)
    p.add_argument('model', help='a model directory whose settings.json names its data set')
    p.add_argument('--data-dir', default=cli.DATA_DIR, help='folder of the data sets')
    args = p.parse_args(argv)
    cli.start_tensorflow(training=False)  # quietly: utils.model_io.checkpoints imports it
    settings = read_settings(args.model)
    if not settings:
        raise ValueError(f"{args.model} has no {SETTINGS_FILE}")
    training = settings.get('training', {})
    if training.get('dataset') == 'files':
        images = from_files(training['images']).training_data(
            patch_size=training['patch_size'])[0]
    else:
        images = get_dataset(training.get('dataset', 'bsd68'), args.data_dir).training_data(
            args.data_dir)[0]
    record_noise_range(settings['training'], images, settings.get('dim', 2))
    write_settings(args.model, settings)
    print(f"{args.model}: training.relative_noise = {settings['training']['relative_noise']}")


if __name__ == '__main__':
    cli.run(main)

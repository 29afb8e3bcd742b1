"""Record the training noise range of a model trained before it was recorded.

    python -m n2s_app.fit trained_models/bsd68-N2S"""
import os
from typing import List, Optional
from utils.evaluation.fit import noise_range




def main(argv: Optional[List[str]] = None) -> None:
    from n2s_app import cli
    from utils.data import datasets
    p = cli.new_parser(__doc__)
    p.add_argument('model', help='a model directory whose settings.json names its data set')
    p.add_argument('--data-dir', default=cli.DATA_DIR, help='folder of the data sets')
    args = p.parse_args(argv)
    cli.start_tensorflow(training=False)  # quietly: utils.model_io.checkpoints imports it
    from utils.core.settings import read_settings, SETTINGS_FILE
    from utils.core.files import write_json_atomic
    settings = read_settings(args.model)
    if not settings:
        raise ValueError(f"{args.model} has no {SETTINGS_FILE}")
    training = settings.get('training', {})
    if training.get('dataset') == 'files':
        from utils.data.user_images import from_files
        dataset = from_files(training['images'])
        images = dataset.training_data(patch_size=training['patch_size'])[0]
    else:
        images = datasets.get_dataset(training.get('dataset', 'bsd68'), args.data_dir).training_data(
            args.data_dir)[0]
    settings['training']['relative_noise'] = noise_range(images, settings.get('dim', 2))
    write_json_atomic(os.path.join(args.model, SETTINGS_FILE), settings)
    print(f"{args.model}: training.relative_noise = {settings['training']['relative_noise']}")


if __name__ == '__main__':
    from n2s_app.cli import run
    run(main)

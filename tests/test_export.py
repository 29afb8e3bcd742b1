"""The exported SavedModel, loaded in a fresh process without this repository, matches predict()."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import ROOT
from models import Noise2Same

LOAD_AND_RUN = textwrap.dedent('''
    import json, sys
    import numpy as np
    import tensorflow as tf
    repo = sys.argv[4]
    ours = lambda path: bool(path) and path.startswith(repo) and '.venv' not in path
    assert not any(ours(p) for p in sys.path)
    fn = tf.saved_model.load(sys.argv[1]).signatures['serving_default']
    x = np.load(sys.argv[2])
    out = fn(image=tf.constant(x))['denoised'].numpy()
    assert not any(ours(getattr(m, '__file__', None)) for m in list(sys.modules.values()))
    np.save(sys.argv[3], out)
''')


@pytest.mark.parametrize('dim,channels,shape,normalisation', [
    (2, 1, (37, 45, 1), 'image'), (3, 1, (9, 21, 18, 1), 'image'), (2, 3, (20, 27, 3), 'image'),
    (2, 3, (20, 27, 3), 'channel')])
def test_saved_model_matches_predict_in_a_fresh_process(tmp_path, dim, channels, shape,
                                                        normalisation):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, *[16] * dim, channels)).astype(np.float32)
    model = Noise2Same(str(tmp_path), 'm', dim=dim, in_channels=channels,
                       net_config={'first_output_filters': 4}, normalisation=normalisation)
    model.train(images, [8] * dim, batch_size=2, steps=2, verbose=False, seed=0)
    exported = model.export(str(tmp_path / 'exported'))
    image = (100 + 20 * rng.normal(size=shape)).astype(np.float32)
    if normalisation == 'channel':
        image = image * np.array([1.0, 3.0, 0.5], np.float32) + np.array([0, 50, -20], np.float32)
    np.save(tmp_path / 'x.npy', image)
    script = tmp_path / 'outside' / 'run.py'
    script.parent.mkdir()
    script.write_text(LOAD_AND_RUN)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['TF_CPP_MIN_LOG_LEVEL'] = '3'
    result = subprocess.run([sys.executable, str(script), exported, str(tmp_path / 'x.npy'),
                             str(tmp_path / 'y.npy'), str(ROOT)], cwd=script.parent, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    served = np.load(tmp_path / 'y.npy')
    expected = model.predict(image[..., 0] if channels == 1 else image)
    expected = expected[..., None] if channels == 1 else expected
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_export_refuses_to_overwrite(tmp_path):
    model = Noise2Same(str(tmp_path), 'm', net_config={'first_output_filters': 4})
    model.train(np.zeros((2, 16, 16, 1), np.float32), [8, 8], batch_size=2, steps=1,
                verbose=False, seed=0)
    (tmp_path / 'out').mkdir()
    with pytest.raises(FileExistsError):
        model.export(str(tmp_path / 'out'))


@pytest.mark.slow
def test_weights_only_folder_predicts_and_initialises_as_the_full_one(tmp_path, capsys):
    import export
    import tensorflow as tf
    from models import Noise2SamePro, load_model
    rng = np.random.default_rng(1)
    images = rng.normal(size=(3, 24, 24, 1)).astype(np.float32)
    full = Noise2SamePro(str(tmp_path), 'full', net_config={'first_output_filters': 4})
    full.train(images, [16, 16], batch_size=2, steps=3, verbose=False, seed=5)
    export.main(['--model-dir', str(tmp_path), '--name', 'full',
                 '--checkpoint', str(tmp_path / 'slim')])
    assert 'weights only, step 3' in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == ['full', 'slim']  # no partial folder left over
    assert os.stat(tmp_path / 'slim').st_mode & 0o777 == os.stat(tmp_path / 'full').st_mode & 0o777
    assert (tmp_path / 'slim' / 'settings.json').read_text() == \
        (tmp_path / 'full' / 'settings.json').read_text()
    names = lambda folder: {n for n, _ in tf.train.list_variables(str(tmp_path / folder / 'ckpt-3'))}
    dropped = names('full') - names('slim')
    assert dropped and all('Adam' in n or 'beta' in n and 'power' in n for n in dropped), dropped
    assert {n for n in names('slim') if 'global_step' in n or 'seed' in n}
    size = lambda folder: os.path.getsize(tmp_path / folder / 'ckpt-3.data-00000-of-00001')
    assert size('slim') < 0.4 * size('full')

    slim = load_model(str(tmp_path), 'slim')
    assert type(slim) is Noise2SamePro and slim.sigma_floor == full.sigma_floor
    image = rng.normal(size=(29, 35)).astype(np.float32)
    np.testing.assert_array_equal(slim.predict(image), full.predict(image))

    # --init-from the weights-only folder trains exactly as from the full one
    grown = []
    for source in ('full', 'slim'):
        model = Noise2SamePro(str(tmp_path), f'from-{source}', net_config={'first_output_filters': 4})
        model.train(images, [16, 16], batch_size=2, steps=2, verbose=False, seed=7,
                    init_from=str(tmp_path / source))
        grown.append(model.predict(image))
    np.testing.assert_array_equal(*grown)

    # training in it says that the optimizer starts afresh, and goes on
    slim.train(images, [16, 16], batch_size=2, steps=4, verbose=False)
    assert 'weights-only (no optimizer state)' in capsys.readouterr().err
    assert int(slim.global_step.numpy()) == 4

    with pytest.raises(FileExistsError):
        export.main(['--model-dir', str(tmp_path), '--name', 'full',
                     '--checkpoint', str(tmp_path / 'slim')])

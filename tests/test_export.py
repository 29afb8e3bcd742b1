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

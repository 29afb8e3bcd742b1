"""benchmarks.curve: which checkpoint each row of a learning curve scores (no TensorFlow run:
a stand-in model reads the checkpoint its temporary folder points to)."""
import os

import pytest

import models
from benchmarks import curve


class _Model:
    """Stands in for Noise2Same(model_dir, name): remembers the checkpoint step it would load."""

    def __init__(self, model_dir, name):
        with open(os.path.join(model_dir, name, 'checkpoint')) as f:
            self.step = int(f.read().split('ckpt-')[1].split('"')[0])
        assert os.path.exists(os.path.join(model_dir, name, f'ckpt-{self.step}.index'))
        assert os.path.exists(os.path.join(model_dir, name, 'settings.json'))


class _Dataset:
    def evaluate(self, model, data_dir):
        yield {'psnr': model.step / 100, 'ssim': 0.5}


def _run(folder, steps):
    os.makedirs(folder)
    for name in ['settings.json'] + [f'ckpt-{s}.{ext}' for s in steps
                                     for ext in ('index', 'data-00000-of-00001')]:
        open(os.path.join(folder, name), 'w').close()


def test_rows_score_each_checkpoint_and_the_starting_model(tmp_path, monkeypatch):
    monkeypatch.setattr(models, 'Noise2Same', _Model)
    _run(tmp_path / 'runs' / 'tune', [250, 500, 750])
    _run(tmp_path / 'shipped', [100, 40000])
    rows = curve.score_runs(str(tmp_path / 'runs'), ['tune'], _Dataset(), 'data', 2, [],
                            starts={'tune': str(tmp_path / 'shipped')})
    got = {(r['run'], r['step']): float(r['psnr']) for r in rows}
    # step 0 is the starting model's newest checkpoint; every 2nd checkpoint and the last
    assert got == {('tune', 0): 400.0, ('tune', 250): 2.5, ('tune', 750): 7.5}
    again = curve.score_runs(str(tmp_path / 'runs'), ['tune'], _Dataset(), 'data', 1, rows,
                             starts={'tune': str(tmp_path / 'shipped')})
    assert sorted(r['step'] for r in again) == [0, 250, 500, 750]  # only the missing one added


def test_start_pairs_are_checked():
    assert curve.name_values(['a=0.5'], '--seconds-per-step') == {'a': 0.5}
    with pytest.raises(ValueError, match='--start takes NAME=VALUE'):
        curve.name_values(['trained_models/x'], '--start', str)

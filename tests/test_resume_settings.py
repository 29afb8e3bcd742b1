"""A resumed model keeps its saved settings; Adam slots follow their variables; numpy numbers."""
import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

import train
import train_pro
from conftest import ROOT
from models import Noise2Same, Noise2SamePro
from utils.core.settings import SettingConflict
from utils.training.optimizer import TF1Adam

TINY = ['--dataset', 'demo', '--filters', '4', '--batch-size', '4', '--patch-size', '16',
        '--save-steps', '10', '--log-steps', '1']
# every training setting away from its default
CHANGED = ['--lmbd', '1.3', '--masking', 'donut', '--mask-perc', '1.5', '--seed', '7',
           '--lr', '0.001']


def logged_terms(model_dir, first_step):
    """{step: {term: value}} of the TensorBoard scalars logged in model_dir from first_step on."""
    terms = {}
    for path in sorted(model_dir.glob('events.out.tfevents.*')):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if event.step >= first_step and value.tag.startswith(('loss_metric/', 'loss',
                                                                      'learning_rate')):
                    tensor = tf.make_ndarray(value.tensor) if value.HasField('tensor') \
                        else value.simple_value
                    terms.setdefault(event.step, {})[value.tag] = float(tensor)
    return terms


def without_run_record(settings):
    return {k: v for k, v in settings.items() if k != 'training'}


@pytest.mark.slow
def test_resume_with_the_shortest_command_keeps_every_setting_and_the_loss(tmp_path):
    data, models = str(tmp_path / 'data'), tmp_path / 'models'
    where = ['--data-dir', data, '--model-dir', str(models)]
    train.main(TINY + CHANGED + where + ['--name', 'whole', '--steps', '30'])
    train.main(TINY + CHANGED + where + ['--name', 'split', '--steps', '20'])
    # the shortest resume (logging every step is not a setting of the model)
    train.main(where + ['--name', 'split', '--steps', '30', '--log-steps', '1'])

    whole = json.loads((models / 'whole' / 'settings.json').read_text())
    split = json.loads((models / 'split' / 'settings.json').read_text())
    assert without_run_record(split) == without_run_record(whole)
    assert split['lmbd'] == 1.3 and split['masking'] == 'donut' and split['mask_perc'] == 1.5
    assert split['opt_config']['base_learning_rate'] == 0.001
    assert split['training'] == whole['training'] and whole['training']['seed'] == 7
    expected, got = logged_terms(models / 'whole', 21), logged_terms(models / 'split', 21)
    assert sorted(got) == list(range(21, 31)) and sorted(expected) == sorted(got)
    for step in expected:
        for tag, value in expected[step].items():
            assert got[step][tag] == pytest.approx(value, rel=1e-5, abs=1e-7), (step, tag)


@pytest.mark.parametrize('flag, value, saved', [('--lmbd', '2', 1.3), ('--masking', 'gaussian', 'donut'),
                                                ('--mask-perc', '0.5', 1.5), ('--seed', '666', 7),
                                                ('--lr', '0.0004', 0.001),
                                                ('--batch-size', '8', 4)])
def test_a_flag_that_changes_a_saved_setting_is_refused(tmp_path, flag, value, saved):
    where = ['--data-dir', str(tmp_path / 'data'), '--model-dir', str(tmp_path / 'm')]
    train.main(TINY + CHANGED + where + ['--name', 'a', '--steps', '2'])
    before = (tmp_path / 'm' / 'a' / 'settings.json').read_text()
    with pytest.raises(SettingConflict) as error:
        train.main(where + ['--name', 'a', '--steps', '4', flag, value])
    message = str(error.value)
    assert str(saved) in message and 'another name' in message
    assert (tmp_path / 'm' / 'a' / 'settings.json').read_text() == before  # nothing rewritten
    assert not (tmp_path / 'm' / 'a' / 'ckpt-4.index').exists()


def test_the_shipped_model_continues_with_its_lmbd(tmp_path):
    shutil.copytree(ROOT / 'trained_models' / 'bsd68-N2S', tmp_path / 'bsd68-N2S')
    model = Noise2Same(str(tmp_path), 'bsd68-N2S')
    assert model.lmbd == pytest.approx(0.992, abs=1e-3)
    assert model.training['batch_size'] == 16  # the run record says how it was trained
    with pytest.raises(SettingConflict, match='lmbd 2.0 differs from the lmbd 0.99'):
        Noise2Same(str(tmp_path), 'bsd68-N2S', lmbd=2.0)


def test_n2sp_settings_are_restored(tmp_path, noisy_images):
    fit = dict(batch_size=4, save_steps=2, log_steps=1, verbose=False, seed=3)
    pro = Noise2SamePro(str(tmp_path), 'p', net_config={'first_output_filters': 4},
                        guard=False, sigma_grad=False)
    pro.train(noisy_images, [16, 16], steps=2, **fit)
    again = Noise2SamePro(str(tmp_path), 'p')
    assert (again.guard, again.sigma_grad, again.sigma_floor) == (False, False, None)
    with pytest.raises(SettingConflict, match='guard'):
        Noise2SamePro(str(tmp_path), 'p', guard=True)
    guarded = Noise2SamePro(str(tmp_path), 'g', net_config={'first_output_filters': 4})
    guarded.train(noisy_images, [16, 16], steps=2, **fit)
    assert Noise2SamePro(str(tmp_path), 'g').sigma_floor == pytest.approx(guarded.sigma_floor)


def test_train_pro_resumes_to_its_saved_final_step(tmp_path):
    where = ['--data-dir', str(tmp_path / 'data'), '--model-dir', str(tmp_path / 'm')]
    train_pro.main(TINY + where + ['--name', 'p', '--steps', '6', '--pro-steps', '2',
                                   '--no-guard'])
    settings = json.loads((tmp_path / 'm' / 'p' / 'settings.json').read_text())
    assert settings['class'] == 'Noise2SamePro' and settings['guard'] is False
    assert settings['training']['pro_total'] == 6 and settings['training']['pro_steps'] == 2
    with pytest.raises(ValueError, match='pro-steps 3 differs'):
        train_pro.main(where + ['--name', 'p', '--steps', '8', '--pro-steps', '3'])
    train_pro.main(where + ['--name', 'p', '--steps', '8'])  # --no-guard left out: kept
    settings = json.loads((tmp_path / 'm' / 'p' / 'settings.json').read_text())
    assert settings['guard'] is False and settings['training']['steps'] == 8


def test_a_cosine_schedule_cannot_be_run_past_its_end(tmp_path):
    where = ['--data-dir', str(tmp_path / 'data'), '--model-dir', str(tmp_path / 'm')]
    train.main(TINY + where + ['--name', 'c', '--steps', '4', '--lr-schedule', 'cosine'])
    with pytest.raises(ValueError, match='reaches 0 at step 4'):
        train.main(where + ['--name', 'c', '--steps', '8'])


def test_adam_slots_follow_their_variables_in_any_order():
    rng = np.random.default_rng(0)
    # same shapes, as a batch norm's gamma and beta
    a, b, c = (tf.Variable(rng.normal(size=3).astype(np.float32)) for _ in range(3))
    adam = TF1Adam([('a', a), ('b', b), ('c', c)])
    start = {name: var.numpy().copy() for name, var in zip('abc', (a, b, c))}
    grads = {name: rng.normal(size=3).astype(np.float32) for name in 'abc'}
    m = {k: np.zeros(3) for k in 'abc'}
    v = {k: np.zeros(3) for k in 'abc'}
    expected = dict(start)
    for step in range(1, 4):
        order = [('c', c), ('a', a), ('b', b)] if step % 2 else [('b', b), ('c', c), ('a', a)]
        adam.apply([tf.constant(grads[n] * step) for n, _ in order], [var for _, var in order],
                   tf.constant(0.01))
        for k in 'abc':  # numpy Adam, TF1 form
            g = grads[k] * step
            m[k] = 0.9 * m[k] + 0.1 * g
            v[k] = 0.999 * v[k] + 0.001 * g ** 2
            lr_t = 0.01 * np.sqrt(1 - 0.999 ** step) / (1 - 0.9 ** step)
            expected[k] = expected[k] - lr_t * m[k] / (np.sqrt(v[k]) + 1e-8)
    for k, var in zip('abc', (a, b, c)):
        np.testing.assert_allclose(var.numpy(), expected[k], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(adam.named_state()['a/Adam'].numpy(), m['a'], rtol=1e-5)
    with pytest.raises(ValueError, match='no slots'):
        adam.apply([tf.zeros(3)], [tf.Variable(tf.zeros(3))], tf.constant(0.01))


def test_numpy_numbers_are_accepted_as_settings(tmp_path, noisy_images):
    model = Noise2Same(str(tmp_path), 'n', lmbd=np.float32(0.8), mask_perc=np.float64(0.5),
                       net_config={'first_output_filters': np.int64(4)},
                       opt_config={'base_learning_rate': np.float32(1e-3)})
    model.train(noisy_images, np.array([16, 16]), batch_size=np.int64(4), steps=np.int32(2),
                save_steps=2, verbose=False, seed=np.int64(5))
    settings = json.loads((tmp_path / 'n' / 'settings.json').read_text())
    assert settings['lmbd'] == pytest.approx(0.8) and settings['training']['batch_size'] == 4
    assert settings['net_config']['first_output_filters'] == 4
    again = Noise2Same(str(tmp_path), 'n', lmbd=np.float32(0.8))  # the same value agrees
    assert again.lmbd == pytest.approx(0.8)


def test_init_from_without_filters_takes_the_starting_models_network(tmp_path, capsys):
    where = ['--data-dir', str(tmp_path / 'data'), '--model-dir', str(tmp_path / 'm')]
    train.main(TINY + where + ['--name', 'start', '--steps', '2'])
    at = TINY.index('--filters')
    small = TINY[:at] + TINY[at + 2:]  # no --filters: 96 for a new model by default
    train.main(small + where + ['--name', 'tuned', '--steps', '1',
                                '--init-from', str(tmp_path / 'm' / 'start')])
    assert 'network of --init-from' in capsys.readouterr().out
    settings = lambda name: json.loads((tmp_path / 'm' / name / 'settings.json').read_text())
    assert settings('tuned')['net_config'] == settings('start')['net_config']
    assert settings('tuned')['net_config']['first_output_filters'] == 4

"""The benchmark commands: the quality benchmark's schedule, statistics and outputs, and a
smoke run of the speed benchmark's pieces."""
import csv
import json
import os
import statistics

import numpy as np
import pytest

from benchmarks import quality
from conftest import ROOT, run_main


def test_variants_share_the_step_budget():
    assert quality.phases('n2s', 600, 100) == [('Noise2Same', {}, 600)]
    assert quality.phases('n2s:0.95', 600, 100) == [('Noise2Same', {'lmbd': 0.95}, 600)]
    assert quality.phases('pro', 600, 100) == [
        ('Noise2Same', {}, 500), ('Noise2SamePro', {'sigma_grad': True, 'guard': True}, 600)]
    assert quality.phases('pro-noguard', 600, 100)[1] == (
        'Noise2SamePro', {'sigma_grad': True, 'guard': False}, 600)
    assert quality.phases('pro-stopgrad', 600, 100)[1] == (
        'Noise2SamePro', {'sigma_grad': False, 'guard': True}, 600)
    assert quality.phases('n2sp', 600, 100) == [('Noise2SamePro', {}, 600)]
    for bad in ('n2s:0', 'n2s:x', 'pro:1', 'other'):
        with pytest.raises(Exception):
            quality.variant_name(bad)


def test_paired_difference_is_the_mean_seedwise_gain():
    runs = {'n2s': {1: {'psnr': 24.0}, 2: {'psnr': 25.0}, 3: {'psnr': 23.0}},
            'pro': {1: {'psnr': 24.5}, 2: {'psnr': 25.1}, 3: {'psnr': 22.9}, 4: {'psnr': 30.0}}}
    diffs = np.array([0.5, 0.1, -0.1])  # seed 4 has no n2s partner
    result = quality.paired_difference(runs, 'pro')
    assert result['n'] == 3 and result['wins'] == 2
    assert result['mean'] == pytest.approx(diffs.mean())
    assert result['sem'] == pytest.approx(statistics.stdev(diffs) / np.sqrt(3))
    assert quality.paired_difference(runs, 'n2s') is None


@pytest.mark.slow
def test_quality_benchmark_runs_end_to_end_and_shares_the_first_phase(tmp_path):
    result = run_main('benchmarks/quality.py', '--dataset', 'demo', '--filters', '4', '--steps', '4',
                      '--pro-steps', '2', '--eval-every', '2', '--seeds', '1', '2', '--variants',
                      'n2s', 'pro', '--no-baselines', '--out', tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ('table.md', 'runs.csv', 'curves.csv', 'convergence.png'):
        assert (tmp_path / name).stat().st_size > 0
    rows = list(csv.DictReader(open(tmp_path / 'curves.csv')))
    steps = {(r['variant'], r['seed']): [int(x['step']) for x in rows if (x['variant'], x['seed'])
                                          == (r['variant'], r['seed'])] for r in rows}
    assert all(s == [2, 4] for s in steps.values()) and len(steps) == 4
    # the shared N2S steps were trained once per seed and kept, like the runs, for a rerun
    assert len(list((tmp_path / 'runs').glob('demo_phase1_*/phase.json'))) == 2
    assert len(list((tmp_path / 'runs').glob('*.json'))) == 4
    final = {path.name.split('_')[1]: json.loads(path.read_text())['psnr']
             for path in (tmp_path / 'runs').glob('demo_*_s1_*.json')}
    assert final['pro'] != final['n2s']  # each continued with its own loss


def test_convergence_plot_shows_every_variant(tmp_path):
    variants = ['n2s', 'pro', 'pro-stopgrad', 'n2sp', 'n2s:0.95', 'n2s:1.3', 'n2s:3']
    runs = {v: {seed: {'curve': [(50, 20.0 + i), (100, 21.0 + seed)]} for seed in (1, 2)}
            for i, v in enumerate(variants)}
    labels = quality.plot(runs, {'NLM': {'psnr': 30.0}}, str(tmp_path / 'c.png'), 'title')
    assert labels == [f'{v} (2 seeds)' for v in variants] + ['NLM']
    assert (tmp_path / 'c.png').stat().st_size > 0


def test_speed_benchmark_pieces_report_consistent_figures():
    from benchmarks import speed
    train = speed.bench_training(4, 2, steps=2, warmup=1, split=True)
    assert train['forward_s'] > 0 and train['forward_backward_s'] > 0  # no timing order: CI load
    assert train['min_s'] <= train['median_s'] <= train['max_s']
    assert train['images_per_s'] == pytest.approx(2 / train['median_s'])
    assert train['gflops'] == pytest.approx(54.4 * (4 / 96) ** 2 * 2 / train['median_s'])
    predict = speed.bench_prediction(4, (40, 24), repeats=2, precision='mixed_bfloat16')
    assert predict['precision'] == 'mixed_bfloat16' and predict['median_s'] > 0


@pytest.mark.slow
def test_mixed_shape_pass_times_every_image_with_and_without_tta(tmp_path):
    from benchmarks import speed
    from conftest import ROOT
    result = speed.bench_mixed_shapes(str(ROOT / 'trained_models'), 'demo32-N2S',
                                      str(tmp_path), limit=3)
    assert result['images'] == '3 random' and result['width'] == 32
    for key in ('plain', 'refined', 'tta'):
        assert result[key]['total_s'] == pytest.approx(3 * result[key]['mean_s'])
    assert result['tta']['mean_s'] > result['plain']['mean_s']  # eight predictions, not one
    assert 'random, width 32' in speed.mixed_table([result])
    quick = speed.bench_mixed_shapes(str(ROOT / 'trained_models'), 'demo32-N2S',
                                     str(tmp_path), limit=2, tta=False)
    assert 'tta' not in quick and '| – | – |' in speed.mixed_table([quick])


@pytest.mark.slow
def test_noise_level_benchmark_scores_against_independent_recomputations(tmp_path):
    """Two BSD68 images at sigma 10, one model: the noisy row and the model rows equal numpy
    recomputations with the documented noise draw; the NLM rows are cached for a rerun."""
    from test_bsd68 import require_pngs
    require_pngs()
    from utils.data import bsd68_build
    from utils.evaluation.metrics import PSNR
    data = tmp_path / 'data'
    bsd68_build.build_bsd68(str(ROOT.parent / 'shared' / 'data' / 'bsd68'), str(data / 'BSD68'))
    result = run_main('benchmarks/noise_levels.py', '--images', '2', '--sigmas', '10', '--names',
                      'demo32-N2S', '--no-bm3d', '--data-dir', data, '--out', tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    with open(tmp_path / 'results.csv') as f:
        rows = {(r['method'], r['image']): float(r['psnr']) for r in csv.DictReader(f)}
    from models import load_model
    from utils.data.datasets import DATASETS
    model = load_model(str(ROOT / 'trained_models'), 'demo32-N2S')
    rng = np.random.default_rng(9010)
    for image in DATASETS['bsd68'].test_images(str(data))[:2]:
        noisy = image.clean + rng.normal(0, 10, image.clean.shape)
        assert rows[('noisy input', image.name)] == pytest.approx(PSNR(image.clean, noisy), abs=2e-3)
        out = model.predict(noisy)
        assert rows[('demo32-N2S', image.name)] == pytest.approx(PSNR(image.clean, out), abs=2e-3)
        assert rows[('demo32-N2S --refine', image.name)] == pytest.approx(
            PSNR(image.clean, model.restored_predictor().refine(noisy, out)[0]), abs=2e-3)
    from benchmarks.noise_levels import Results
    cached = Results(str(tmp_path / 'classical.csv'))
    assert len(cached.cache) == 2  # NLM of each image; a rerun takes them from here
    cached.classical('NLM (blind)', 10, image.name, image.clean, lambda: 1 / 0)  # not recomputed
    table = (tmp_path / 'table.md').read_text()
    assert '| demo32-N2S --refine |' in table and (tmp_path / 'noise_levels.png').stat().st_size


@pytest.mark.slow
def test_adapt_benchmark_tunes_on_validation_images_against_recomputations(tmp_path):
    """--tune on the first held-out validation image at sigma 25, one model, steps 1 and 2: the
    noisy row is the documented noise draw, the 0-step row the model's own prediction, the
    2-step rows those of adapting each image with n2s_app.adapt (plain and refined) with the
    image's own noise level in the loss."""
    from test_bsd68 import require_pngs
    require_pngs()
    from benchmarks.noise_levels import validation_clean
    from models import load_model
    from n2s_app.adapt import adapted
    from utils.evaluation.metrics import PSNR
    shared = str(ROOT.parent / 'shared' / 'data' / 'bsd68')
    result = run_main('benchmarks/adapt.py', '--tune', '--from', shared, '--images', '1',
                      '--sigmas', '25', '--names', 'demo32-N2S', '--steps', '1', '2', '--lrs',
                      '1e-3', '--lmbds', 'image', '--out', tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    with open(tmp_path / 'tune_adapt.csv') as f:
        rows = {r['method']: r for r in csv.DictReader(f)}
    clean = validation_clean(shared)[:1]
    rng = np.random.default_rng(9125)
    noisy = [c + rng.normal(0, 25, c.shape) for c in clean]
    assert float(rows['noisy input']['psnr']) == pytest.approx(
        np.mean([PSNR(c, x) for c, x in zip(clean, noisy)]), abs=6e-3)
    model = load_model(str(ROOT / 'trained_models'), 'demo32-N2S')
    plain = [model.predict(x) for x in noisy]
    assert float(rows['demo32-N2S']['psnr']) == pytest.approx(
        np.mean([PSNR(c, f) for c, f in zip(clean, plain)]), abs=6e-3)
    adapted_out, refined_out = [], []
    for x in noisy:
        with adapted(model, x, 2, 1e-3, lmbd='image'):
            adapted_out.append(model.predict(x))
            refined_out.append(model.predictor.refine(x, adapted_out[-1])[0])
    row = rows['demo32-N2S --adapt 2 --adapt-lr 0.001 --adapt-lmbd image']
    assert float(row['psnr']) == pytest.approx(
        np.mean([PSNR(c, f) for c, f in zip(clean, adapted_out)]), abs=6e-3)
    assert float(row['refined']) == pytest.approx(
        np.mean([PSNR(c, y) for c, y in zip(clean, refined_out)]), abs=6e-3)
    assert float(row['psnr']) != float(rows['demo32-N2S']['psnr'])  # the 2 steps changed it
    assert '| 25 | demo32-N2S --adapt 1 --adapt-lr 0.001 --adapt-lmbd image |' in (
        tmp_path / 'tune_adapt.md').read_text()


def test_blind_pilot_noise_normalisation_and_branching(tmp_path):
    """noise-norm divides each image (minus its mean) by scikit-image's estimate_sigma, floored
    at 1 % of its std; a branch holds the settings and only the checkpoint of the given step,
    named in its `checkpoint` file."""
    import shutil

    from skimage.restoration import estimate_sigma

    from benchmarks import blind_pilot
    from utils.model_io.checkpoints import latest_checkpoint
    rng = np.random.default_rng(4)
    smooth = np.outer(np.linspace(0, 200, 64), np.ones(64))
    images = [smooth + rng.normal(0, 20, smooth.shape), smooth]  # noisy, noise-free
    out = blind_pilot.noise_normalised(images)
    assert out.shape == (2, 64, 64, 1)
    np.testing.assert_allclose(out[0, ..., 0], (images[0] - images[0].mean())
                               / estimate_sigma(images[0]), rtol=1e-5)
    assert abs(blind_pilot.noise_scale(images[0]) / 20 - 1) < 0.1
    assert blind_pilot.noise_scale(smooth) == pytest.approx(0.01 * smooth.std())
    source = tmp_path / 'a'
    source.mkdir()
    shutil.copy(ROOT / 'trained_models/demo32-N2S/settings.json', source)
    for step in (5, 10):
        for suffix in ('.index', '.data-00000-of-00001'):
            (source / f'ckpt-{step}{suffix}').write_bytes(b'x')
    blind_pilot.branch(str(tmp_path), 'a', 'b', 5)
    assert sorted(p.name for p in (tmp_path / 'b').iterdir()) == [
        'checkpoint', 'ckpt-5.data-00000-of-00001', 'ckpt-5.index', 'settings.json']
    assert latest_checkpoint(str(tmp_path / 'b')).endswith('ckpt-5')


def test_folder_benchmark_writes_8bit_photos_and_scores_the_outputs(tmp_path, monkeypatch):
    """benchmarks.folder end to end with stand-ins for train.py and test_single.py: the photo
    folder and held-out PNGs are the noisy images rounded and clipped, the training command is
    the user's (--images the folder, --noise-sigma auto), and each row's PSNR is recomputed."""
    from benchmarks import folder
    from utils.core.image_io import read_image, write_image_atomic
    rng = np.random.default_rng(5)
    data = tmp_path / 'sigma10' / 'BSD68'
    for split in ('train', 'val', 'test'):
        (data / split).mkdir(parents=True)
    train = rng.uniform(-20, 280, (6, 48, 48)).astype(np.float32)
    np.save(data / 'train' / 'DCNN400_train_gaussian25.npy', train)
    np.save(data / 'val' / 'DCNN400_validation_gaussian25.npy', train[:1])
    clean = [np.round(rng.uniform(0, 255, (40, 56))).astype(np.float32) for _ in range(3)]
    noisy = [c + rng.normal(0, 10, c.shape).astype(np.float32) for c in clean]
    for name, images in (('bsd68_gaussian25', noisy), ('bsd68_groundtruth', clean)):
        array = np.empty(len(images), object)
        array[:] = images
        np.save(data / 'test' / f'{name}.npy', array)
    commands = []

    def fake_run(command):  # train: a final checkpoint; test_single: clean + offset as PNG
        commands.append(command)
        if command[0] == 'train.py':
            model = os.path.join(command[command.index('--model-dir') + 1],
                                 command[command.index('--name') + 1])
            os.makedirs(model)
            open(os.path.join(model, 'ckpt-30.index'), 'w').close()
            return 60.0
        out = command[command.index('--output-dir') + 1]
        os.makedirs(out)
        offset = 3 if '--no-refine' in command else 1
        for i, c in enumerate(clean):
            write_image_atomic(os.path.join(out, f'test_{i:02d}_denoised.png'),
                               np.clip(c + offset, 0, 255).astype(np.uint8))
        return 6.0

    monkeypatch.setattr(folder, 'run', fake_run)
    folder.main(['--sigma', '10', '--photos', '4', '--steps', '30', '--data-dir',
                 str(tmp_path / 'sigma10'), '--work', str(tmp_path / 'work'),
                 '--out', str(tmp_path / 'out')])
    photos = tmp_path / 'work' / 'sigma10' / 'photos-4'
    assert sorted(os.listdir(photos)) == [f'photo_{i:03d}.png' for i in range(4)]
    first = read_image(str(photos / 'photo_000.png')).pixels
    assert first.dtype == np.uint8
    np.testing.assert_array_equal(first, np.clip(np.rint(train[0]), 0, 255))
    train_command = commands[0]
    assert train_command[:3] == ['train.py', '--images', str(photos)]
    assert train_command[train_command.index('--noise-sigma') + 1] == 'auto'
    assert [c[0] for c in commands[1:]] == ['test_single.py'] * 4

    def psnr(a, b):
        return 20 * np.log10(255) - 10 * np.log10(np.mean((np.float64(a) - b) ** 2))
    quantised = [np.clip(np.rint(x), 0, 255) for x in noisy]
    with open(tmp_path / 'out' / 'sigma10.csv') as f:
        rows = {r['method']: float(r['psnr']) for r in csv.DictReader(f)}
    assert rows['noisy input'] == pytest.approx(
        np.mean([psnr(c, q) for c, q in zip(clean, quantised)]), abs=0.006)
    for refined, offset in ((True, 1), (False, 3)):
        expected = np.mean([psnr(c, np.clip(c + offset, 0, 255)) for c in clean])
        key = 'trained on the folder (30 steps), ' + (
            'refined (default)' if refined else '--no-refine')
        assert rows[key] == pytest.approx(expected, abs=0.006)
    assert '1.0 min' in (tmp_path / 'out' / 'sigma10.md').read_text()


def test_colour_report_remakes_the_table_from_its_rows_and_plots_one_mode(tmp_path):
    """`--report --colour`: colour.md from colour.csv with the recorded machine and date, the
    means recomputed from the rows; the plot shows one colour mode, and all 25 methods (more
    than the palette's 20 colours) plot too."""
    rng = np.random.default_rng(3)
    methods = ['noisy input', 'colour NLM (blind)'] + [
        f'm{i} [{mode}]' + refined for i in range(6) for mode in ('opponent', 'channels')
        for refined in ('', ' --refine')][:23]
    rows = [{'method': m, 'sigma': f'{s:g}', 'image': img, 'psnr': round(rng.uniform(20, 35), 3),
             'ssim': 0.5, 'seconds': 0.1}
            for m in methods for s in (15, 30) for img in ('a', 'b')]
    with open(tmp_path / 'colour.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (tmp_path / 'colour_run.json').write_text(
        json.dumps({'machine': 'test CPU', 'date': '2000-01-02'}))
    result = run_main('benchmarks/noise_levels.py', '--report', '--colour', '--out', tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    text = (tmp_path / 'colour.md').read_text()
    assert 'test CPU, 2000-01-02' in text
    want = np.mean([r['psnr'] for r in rows
                    if r['method'] == 'm5 [channels]' and r['sigma'] == '30'])
    line = next(l for l in text.splitlines() if l.startswith('| m5 [channels] |'))
    assert line.split('|')[3].strip().strip('*') == f'{want:.2f}'
    assert (tmp_path / 'colour.png').stat().st_size > 0
    from benchmarks.noise_levels import Results, plot
    plot(Results.read(str(tmp_path / 'colour.csv')), (15, 30), str(tmp_path / 'all.png'), 'all')
    assert (tmp_path / 'all.png').stat().st_size > 0


def test_the_generalised_anscombe_transform_stabilises_and_inverts_without_bias():
    """Poisson counts plus read noise: after `anscombe` the noise std is ~1 at any level, and
    `inverse_anscombe` of the transformed mean gives back the mean count (the exact unbiased
    inverse, Makitalo and Foi), where the algebraic inverse is biased."""
    from utils.core.noise import anscombe, inverse_anscombe
    rng = np.random.default_rng(0)
    for mean, read in ((5.0, 0.0), (20.0, 0.0), (50.0, 2.0)):
        z = anscombe(rng.poisson(mean, 400_000) + rng.normal(0, read, 400_000), read)
        assert z.std() == pytest.approx(1.0, abs=0.04)
        assert inverse_anscombe(np.array([z.mean()]), read)[0] == pytest.approx(mean, rel=0.01)
        algebraic = (z.mean() / 2) ** 2 - 0.375 - read ** 2
        if mean <= 5:
            assert abs(algebraic - mean) > 0.1  # the bias the exact inverse removes


@pytest.mark.slow
def test_the_poisson_tables_are_recomputed_from_the_documented_noise(tmp_path):
    """--poisson on one image: the noisy rows are `poisson_images` of the documented seeds, NLM
    on the Anscombe transform the documented baseline, and the model rows its prediction."""
    from test_bsd68 import require_pngs
    require_pngs()
    from benchmarks.noise_levels import poisson_images, poisson_settings
    from utils.data import bsd68_build
    from utils.data.datasets import DATASETS
    from utils.evaluation.baselines import nlm, on_anscombe
    from utils.evaluation.metrics import PSNR
    data = tmp_path / 'data'
    bsd68_build.build_bsd68(str(ROOT.parent / 'shared' / 'data' / 'bsd68'), str(data / 'BSD68'))
    result = run_main('benchmarks/noise_levels.py', '--poisson', '--images', '1', '--names',
                      'demo32-N2S', '--no-bm3d', '--data-dir', data, '--out', tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    with open(tmp_path / 'poisson.csv') as f:
        rows = {(r['method'], r['sigma']): float(r['psnr']) for r in csv.DictReader(f)}
    image = DATASETS['bsd68'].test_images(str(data))[0]
    clean = np.asarray(image.clean, np.float64)
    for label, peak, read in poisson_settings()[2::4]:  # peak 10, and peak 3 with read noise
        x = poisson_images([clean], peak, read)[0]
        assert rows[('noisy input', label)] == pytest.approx(PSNR(clean, x), abs=2e-3)
        assert rows[('NLM on Anscombe (known)', label)] == pytest.approx(
            PSNR(clean, on_anscombe(lambda z: nlm(z, sigma=1.0), x, peak, read)), abs=2e-3)
    text = (tmp_path / 'poisson.md').read_text()
    assert '### Images below their noisy input' in text
    header = next(line for line in text.splitlines() if line.startswith('| method |'))
    assert all(f'| {label} |' in header for label, _, _ in poisson_settings())
    assert '| demo32-N2S --refine |' in text and (tmp_path / 'poisson_gain.md').exists()

"""The web demo as its users meet it: the real server (demo.py) on a free localhost port, driven
over HTTP with Gradio's client, and in a headless Chromium."""
import functools
import importlib
import os
import re
import shutil
import threading

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT
from n2s_app.cli import DEFAULT_MODEL, DEFAULT_REFINE

# CI (.ci/run) sets one of these: there a missing web extra fails the tests, not skips them
REQUIRED = '1' in (os.environ.get('N2S_REQUIRE_EXTRAS'), os.environ.get('N2S_REQUIRE_BROWSER'))


def import_or_skip(module: str, install: str):
    """pytest.importorskip, but with REQUIRED a missing module fails instead."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        message = f'{module} cannot be imported ({error}): {install}'
        if not REQUIRED:
            pytest.skip(message, allow_module_level=True)
        pytest.fail(f'{message}; N2S_REQUIRE_EXTRAS or N2S_REQUIRE_BROWSER is 1', pytrace=False)


MISSING = None  # with REQUIRED, why gradio_client is missing: each test fails on it (below),
try:            # the rest of the suite runs on
    gradio_client = import_or_skip('gradio_client', 'pip install -r requirements-web.txt')
except pytest.fail.Exception as failure:
    gradio_client, MISSING = None, str(failure)


@pytest.fixture(scope='module', autouse=True)
def _web_extras():
    if MISSING:
        pytest.fail(MISSING, pytrace=False)


MODEL = 'demo32-N2S'


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    """demo.py serving a model folder with two shipped models (the default one among them)
    and one without a checkpoint."""
    from benchmarks.web import running_demo
    base = tmp_path_factory.mktemp('web')
    models = base / 'models'
    models.mkdir()
    for name in {MODEL, DEFAULT_MODEL}:
        os.symlink(ROOT / 'trained_models' / name, models / name)
    (models / 'no-checkpoint').mkdir()
    with running_demo(str(models), str(base / 'data')) as url:
        yield url, base


def denoise(url, path, model=MODEL, sigma=0, refine=DEFAULT_REFINE):
    client = gradio_client.Client(url, verbose=False)
    return client.predict(gradio_client.handle_file(str(path)), model, sigma, False, False,
                          refine, api_name='/denoise')


@functools.lru_cache(maxsize=1)
def shipped_model():
    from models import Noise2Same
    return Noise2Same(str(ROOT / 'trained_models'), MODEL)


def expected(image: np.ndarray, refine: bool = DEFAULT_REFINE) -> np.ndarray:
    return shipped_model().predict(image.astype(np.float64), refine=refine)


def test_a_float_tiff_comes_back_as_predict_gives_it(server, tmp_path):
    import tifffile
    url, _ = server
    rng = np.random.default_rng(0)
    image = (100 + 40 * np.sin(np.arange(96)[:, None] / 9) + rng.normal(0, 25, (96, 160))
             ).astype(np.float32)
    tifffile.imwrite(tmp_path / 'float.tif', image)
    for refine in (True, False):
        _, path, report = denoise(url, tmp_path / 'float.tif', refine=refine)
        assert path.endswith('float_denoised.tif') and MODEL in report
        assert ('refined' in report) == refine
        out = tifffile.imread(path)
        assert out.dtype == np.float32 and out.shape == image.shape
        want = np.clip(expected(image, refine), image.min(), image.max())  # the input's range
        assert np.max(np.abs(out - want)) <= 1e-4 * (image.max() - image.min())


def test_bad_input_gets_a_message_and_the_server_keeps_serving(server, tmp_path):
    import tifffile
    url, _ = server
    (tmp_path / 'text.png').write_text('not an image')
    (tmp_path / 'empty.png').write_bytes(b'')
    tifffile.imwrite(tmp_path / 'volume.tif', np.zeros((2, 3, 16, 16), np.uint8))
    Image.new('L', (10000, 10000)).save(tmp_path / 'huge.png')
    good = tmp_path / 'good.png'
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 80), dtype=np.uint8)).save(good)
    for path, model, message in ((tmp_path / 'text.png', MODEL, 'cannot read'),
                                 (tmp_path / 'empty.png', MODEL, 'is empty'),
                                 (tmp_path / 'volume.tif', MODEL, 'expected a 2D'),
                                 (tmp_path / 'huge.png', MODEL, '100 megapixels'),
                                 (good, 'no-checkpoint', 'has no checkpoint')):
        with pytest.raises(Exception, match=message):
            denoise(url, path, model)
        _, out, _ = denoise(url, good)  # still serving
        assert os.path.exists(out)


def test_two_users_at_once_get_their_own_results(server, tmp_path):
    url, _ = server
    rng = np.random.default_rng(2)
    images = {name: np.clip(rng.normal(120, 50, shape), 0, 255).astype(np.uint8)
              for name, shape in (('a', (72, 96)), ('b', (88, 64)))}
    results = {}

    def user(name):
        Image.fromarray(images[name]).save(tmp_path / f'{name}.png')
        results[name] = denoise(url, tmp_path / f'{name}.png')[1]
    threads = [threading.Thread(target=user, args=(name,)) for name in images]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for name, image in images.items():
        out = np.asarray(Image.open(results[name])).astype(np.float64)
        want = np.clip(np.round(expected(image)), 0, 255)
        assert out.shape == image.shape and np.max(np.abs(out - want)) <= 1


def test_added_noise_is_scored_against_the_clean_upload(server, tmp_path):
    url, _ = server
    clean = np.tile(np.linspace(40, 200, 96), (80, 1)).astype(np.uint8)
    Image.fromarray(clean).save(tmp_path / 'clean.png')
    _, path, report = denoise(url, tmp_path / 'clean.png', sigma=25)
    assert 'sigma 25 added' in report and report.count(' dB / ') == 2
    noisy_db, denoised_db = map(float, re.findall(r'(\d+\.\d\d) dB / ', report))

    def psnr(a, b):  # numpy, on the 0..255 scale
        return 10 * np.log10(255.0 ** 2 / np.mean((np.float64(a) - np.float64(b)) ** 2))
    # the noise the service adds (seed 0): the noisy image, rebuilt here
    noisy = clean + np.random.default_rng(0).normal(0, 25, clean.shape)
    assert abs(noisy_db - psnr(clean, noisy)) <= 0.006, (noisy_db, psnr(clean, noisy))
    assert abs(noisy_db - 20 * np.log10(255 / 25)) < 0.3  # sigma 25's PSNR, whatever the seed
    # the denoised number is of the result against the clean upload (the file is the float
    # result rounded to 8 bits: ~0.01 dB lower at 34 dB), not against the noisy image
    result = np.asarray(Image.open(path))
    assert result.shape == clean.shape
    assert abs(denoised_db - psnr(clean, result)) <= 0.05, (denoised_db, psnr(clean, result))
    assert abs(denoised_db - psnr(noisy, result)) > 1, (denoised_db, psnr(noisy, result))
    assert denoised_db > noisy_db + 5


@pytest.mark.slow
def test_under_load_it_answers_correctly_and_its_folders_stay_bounded(tmp_path):
    """50 sequential and 4 concurrent uploads to a server of its own: every answer right,
    within a time bound, the server answers after, and the demo's files stay bounded."""
    import time
    import urllib.request
    from benchmarks.web import running_demo
    from n2s_app.web_demo import KEEP_FILES
    models, cache = tmp_path / 'models', tmp_path / 'gradio-cache'
    models.mkdir()
    os.symlink(ROOT / 'trained_models' / MODEL, models / MODEL)
    rng = np.random.default_rng(3)
    images = [np.clip(rng.normal(120, 50, (48 + i % 5 * 8, 64)), 0, 255).astype(np.uint8)
              for i in range(54)]
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f'u{i}.png')
    results, wrong = {}, []

    def check(i):  # a result, read before later requests prune it
        out = np.asarray(Image.open(results[i])).astype(np.float64)
        want = np.clip(np.round(expected(images[i])), 0, 255)
        if out.shape != images[i].shape or np.max(np.abs(out - want)) > 1:
            wrong.append(i)

    with running_demo(str(models), str(tmp_path / 'data'),
                      env={'GRADIO_TEMP_DIR': str(cache)}) as url:
        examples = sum(len(files) for _, _, files in os.walk(cache))
        start = time.time()
        for i in range(50):
            results[i] = denoise(url, tmp_path / f'u{i}.png')[1]
            check(i)
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(
            i, denoise(url, tmp_path / f'u{i}.png')[1])) for i in range(50, 54)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        elapsed = time.time() - start
        for i in range(50, 54):
            check(i)
        assert not wrong
        assert len(results) == 54 and elapsed < 240
        assert urllib.request.urlopen(url, timeout=10).status == 200  # still answering
        files = sum(len(names) for _, _, names in os.walk(cache))
        # the newest KEEP_FILES, the examples cached at start, and the files Gradio writes
        # after the last requests' pruning (their views and result copies)
        assert files <= KEEP_FILES + examples + 8, files


def test_the_page_in_a_browser(server, tmp_path):
    """Headless Chromium uploads an example, waits for the result with the default model and
    settings, lets the page settle and takes a screenshot: into the test's temporary folder,
    or with N2S_UPDATE_SCREENSHOT=1 into results/web_demo.png (the README's picture, a
    tracked file that the tests otherwise leave alone)."""
    chromium = shutil.which('chromium') or shutil.which('chromium-browser')
    if chromium is None:
        if os.environ.get('N2S_REQUIRE_BROWSER') == '1':
            pytest.fail('no chromium: apt-get install chromium')
        pytest.skip('no chromium (apt-get install chromium)')
    playwright = import_or_skip('playwright.sync_api', 'pip install -r requirements-test.txt')
    screenshot = ROOT / 'results' / 'web_demo.png' \
        if os.environ.get('N2S_UPDATE_SCREENSHOT') == '1' else tmp_path / 'web_demo.png'
    url, base = server
    example = base / 'data' / 'web_examples' / 'noisy_camera.png'
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=['--no-sandbox'])
        page = browser.new_page(viewport={'width': 1280, 'height': 900})
        page.goto(url)
        page.locator('#upload input[type=file]').set_input_files(str(example))
        page.locator('#denoise').click()
        page.locator('#report').get_by_text(DEFAULT_MODEL).wait_for(timeout=60000)
        page.wait_for_load_state('networkidle')
        page.wait_for_timeout(2000)  # transitions end: no washed-out half-faded images
        os.makedirs(screenshot.parent, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
        assert Image.open(screenshot).size[0] == 1280
        assert page.locator('#compare img').count() >= 1
        assert 'noisy_camera_denoised' in page.locator('#download').inner_text(), \
            page.locator('#download').inner_text()
        browser.close()


def test_adapting_in_the_demo_reports_progress_and_leaves_the_model_as_loaded(tmp_path):
    from n2s_app.web_demo import DenoiseService
    rng = np.random.default_rng(8)
    image = np.clip(rng.normal(120, 40, (64, 80)), 0, 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / 'in.png')
    service = DenoiseService(str(ROOT / 'trained_models'), out_dir=str(tmp_path / 'out'))
    seen = []
    result = service.denoise(str(tmp_path / 'in.png'), MODEL, adapt_steps=3,
                             progress=lambda fraction, text: seen.append(text))
    assert 'adapted to the image for 3 steps' in result.report
    assert [t for t in seen if t.startswith('adapting')][-1] == 'adapting to the image: step 3/3'
    plain = service.denoise(str(tmp_path / 'in.png'), MODEL)  # the weights are back
    out = np.asarray(Image.open(plain.path)).astype(np.float64)
    assert np.max(np.abs(out - np.clip(np.round(expected(image)), 0, 255))) <= 1


def test_the_demos_first_choice_picks_the_model_per_image_as_test_single_does(tmp_path):
    """With both of its models there, AUTOMATIC comes first and is the default; a very noisy
    upload is denoised by cli.NOISY_MODEL (the report says so), a quiet one by the default."""
    from n2s_app.cli import NOISY_MODEL
    from n2s_app.web_demo import AUTOMATIC, DenoiseService
    from utils.data.bsd68_build import poisson_gaussian
    models = tmp_path / 'models'
    models.mkdir()
    for name in (DEFAULT_MODEL, NOISY_MODEL):
        os.symlink(ROOT / 'trained_models' / name, models / name)
    service = DenoiseService(str(models), out_dir=str(tmp_path / 'out'))
    assert service.choices()[0] == AUTOMATIC == service.default_model()
    clean = np.add.outer(np.linspace(20, 200, 64), np.linspace(0, 40, 80))
    rng = np.random.default_rng(2)
    for name, pixels, want in (('dim.tif', poisson_gaussian(clean, 3.0, 0.0, rng), NOISY_MODEL),
                               ('quiet.tif', clean + rng.normal(0, 3, clean.shape),
                                DEFAULT_MODEL)):
        Image.fromarray(pixels.astype(np.float32)).save(tmp_path / name)
        report = service.denoise(str(tmp_path / name), AUTOMATIC).report
        assert report.startswith(f'{want} (chosen'), report

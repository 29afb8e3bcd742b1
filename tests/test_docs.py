"""The documentation (README.md and docs/) against the repository: relative links and their
anchors, file paths, and the flags of every `python SCRIPT.py` / `python -m MODULE` command."""
import functools
import re
from pathlib import Path

import pytest

from benchmarks.noise_levels import DEFAULT
from conftest import ROOT, run_main

DOCS = [ROOT / 'README.md'] + sorted((ROOT / 'docs').glob('*.md'))
# written by the commands the docs describe (data sets, make demo, exports), not committed
GENERATED = ('.venv/', 'Denoising_data/', 'results/demo/', 'results/speed.json', 'exported/',
             'runs/', 'trained_models/demo-N2S', 'trained_models/N2S', '../shared/')
PATH_SUFFIXES = ('.py', '.md', '.png', '.csv', '.json', '.txt', '.npy', '.yaml', '.zip', '.sh')
NOT_PATHS = ('loss_metric/',)  # TensorBoard tags


def placeholder(token: str) -> bool:
    """NAME, DIR, SCRIPT.py, BSD68/: a component in capitals stands for the reader's own."""
    return any(re.fullmatch(r'[A-Z][A-Z0-9_]{2,}', part) for part in re.split(r'[/.]', token))


def markdown(path: Path) -> str:
    return path.read_text()


def prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return re.sub(r'```.*?```', '', text, flags=re.S)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r'[`*_]', '', heading.strip().lower())
    text = re.sub(r'[^\w\- ]', '', text)
    return text.replace(' ', '-')


def anchors(path: Path) -> set:
    return {slug(line.lstrip('#')) for line in prose(markdown(path)).splitlines()
            if line.startswith('#')}


def test_the_readme_fits_a_screenful_and_has_both_commands_first():
    text = markdown(ROOT / 'README.md')
    assert len(text.splitlines()) <= 150
    first_screen = '\n'.join(text.splitlines()[:45])
    for needle in ('make demo', 'make test', 'test_single.py', 'train.py --images'):
        assert needle in first_screen, needle


@pytest.mark.parametrize('doc', DOCS, ids=lambda p: p.name)
def test_relative_links_and_anchors_exist(doc):
    broken = []
    for target in re.findall(r'\]\(([^)\s]+)\)', prose(markdown(doc))):
        if re.match(r'[a-z]+://', target) or target.startswith('mailto:'):
            continue
        file, _, anchor = target.partition('#')
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            broken.append(target)
        elif anchor and path.suffix == '.md' and anchor not in anchors(path):
            broken.append(target)
    assert not broken, f'{doc.name}: broken links {broken}'


@pytest.mark.parametrize('doc', DOCS, ids=lambda p: p.name)
def test_file_paths_in_the_text_exist(doc):
    missing = []
    for code in re.findall(r'`([^`\n]+)`', prose(markdown(doc))):
        for token in code.split():
            token = token.strip('(),;:')
            looks_like_path = ('/' in token or token.endswith(PATH_SUFFIXES)) and \
                re.fullmatch(r'[\w.\-/]+', token) and not token.startswith(('-', '/', 'http'))
            if not looks_like_path or token.startswith(GENERATED + NOT_PATHS) or \
                    placeholder(token):
                continue
            if token.count('/') == 0 and not token.endswith('.py') or \
                    token.count('/') == 1 and token.endswith('/'):
                continue  # a bare name (a model's settings.json, its eval/) names no place
            module, _, attribute = token.rpartition('.')
            if '/' in token and not token.endswith(PATH_SUFFIXES) and attribute.isidentifier():
                token = module + '.py'  # utils/baselines.nlm: a function of utils/evaluation/baselines.py
            if not ((ROOT / token).exists() or (doc.parent / token).exists()):
                missing.append(token)
    assert not missing, f'{doc.name}: paths that do not exist: {sorted(set(missing))}'


def commands(text: str):
    """(script or module, [flags]) of every `python X.py ...` / `python -m X ...` command, code
    blocks included (continuation lines joined)."""
    text = text.replace('\\\n', ' ')
    for match in re.finditer(r'python3?\s+(-m\s+[\w.]+|[\w/]+\.py)([^\n`|;&#]*)', text):
        target = match.group(1)
        flags = re.findall(r'(?<![\w-])(--[a-z][a-z0-9-]*)', match.group(2))
        yield target.replace('-m', '').strip(), flags


@functools.lru_cache(maxsize=None)
def help_flags(target: str) -> frozenset:
    out = run_main(ROOT / target if target.endswith('.py') else target, '--help')
    assert out.returncode == 0, f'{target} --help failed: {out.stderr[-500:]}'
    return frozenset(re.findall(r'(--[a-z][a-z0-9-]*)', out.stdout))


OUR_SCRIPTS = {p.name for p in ROOT.glob('*.py')}


@pytest.mark.parametrize('doc', DOCS, ids=lambda p: p.name)
def test_every_documented_flag_is_one_the_script_takes(doc):
    unknown = []
    for target, flags in commands(markdown(doc)):
        ours = target in OUR_SCRIPTS or target.startswith(('benchmarks.', 'n2s_app.'))
        if not ours or not flags or placeholder(target):
            continue
        known = help_flags(target)
        unknown += [f'{target} {flag}' for flag in flags if flag not in known]
    assert not unknown, f'{doc.name}: flags no --help lists: {sorted(set(unknown))}'


def test_the_checks_catch_what_they_should(tmp_path):
    """The checkers themselves: a renamed flag, a missing file and a broken anchor are found."""
    assert list(commands('run `python train.py --nosuch 3`')) == [('train.py', ['--nosuch'])]
    assert '--nosuch' not in help_flags('train.py') and '--steps' in help_flags('train.py')
    assert slug("N2SP's guard: *on*") == 'n2sps-guard-on'
    doc = tmp_path / 'x.md'
    doc.write_text('# A title\n\n[ok](#a-title) [bad](#b) [gone](nothing.md)\n')
    links = re.findall(r'\]\(([^)\s]+)\)', prose(markdown(doc)))
    found = [t for t in links if t.partition('#')[2] not in anchors(doc)
             or not (doc.parent / t.partition('#')[0]).exists()]
    assert found == ['#b', 'nothing.md']


def table_rows(text: str, first_cell: str) -> dict:
    """The markdown table whose header row starts with first_cell (the first in `text` from
    there): {first cell of each row: {column header: cell}}, '**' and spaces stripped."""
    block = (first_cell + text.split(first_cell, 1)[1]).split('\n\n', 1)[0]
    lines = [[c.strip().strip('*').strip() for c in line.strip().strip('|').split('|')]
             for line in block.strip().splitlines() if not line.startswith('|---')]
    return {row[0]: dict(zip(lines[0][1:], row[1:])) for row in lines[1:]}


def noise_table_mismatches(readme: str, written: str) -> list:
    """The README noise-level cells that are not the benchmark table's cell of the same
    method (the row named in the README: model in backticks, 'refined' -> '--refine', NLM,
    BM3D, noisy input; '12 images' rows and BM3D from the BM3D-subset table) and the same
    column (sigma N, s/image where the README gives it)."""
    readme_rows = table_rows(readme, '| PSNR (dB), 68 BSD68 images |')
    full, subset = written.split('### The same on the BM3D subset', 1)
    tables = {False: table_rows(full, '| method |'), True: table_rows(subset, '| method |')}
    wrong = []
    for label, cells in readme_rows.items():
        model = re.search(r'`([^`]+)`', label)
        if 'test_single.py' in label:  # the default: its model chosen per image
            method = DEFAULT
        elif label.startswith('noisy input'):
            method = 'noisy input'
        elif label.startswith('NLM'):
            method = 'NLM (blind)'
        elif label.startswith('BM3D'):
            method = 'BM3D (blind sigma)' if 'blind' in label else 'BM3D (known sigma)'
        else:
            assert model, f'README row {label!r}: which benchmark method?'
            method = model.group(1) + (' --refine' if 'refined' in label else '')
        row = tables['12 images' in label or method.startswith('BM3D')].get(method)
        assert row is not None, f'README row {label!r}: no {method!r} in table.md'
        for column, cell in cells.items():
            sigma = re.fullmatch(r'σ (\d+)', column)
            key = f'sigma {sigma.group(1)}' if sigma else 's/image' if column == 's / image' \
                else None
            assert key, f'README column {column!r}'
            if (cell or sigma) and row.get(key) != cell:
                wrong.append((label, column, cell, row.get(key)))
    return wrong


def test_the_readmes_noise_level_table_is_the_benchmarks():
    """Every cell of the README's noise-level table is the cell of the same method (row) and
    noise level (column) in the table the benchmark wrote (results/noise_model/table.md), so
    a hand edit, swapped rows or a stale copy fails."""
    readme = markdown(ROOT / 'README.md')
    written = (ROOT / 'results/noise_model/table.md').read_text()
    rows = table_rows(readme, '| PSNR (dB), 68 BSD68 images |')
    assert len(rows) >= 8 and all(len([c for c in r if c.startswith('σ')]) == 6
                                  for r in rows.values())
    assert noise_table_mismatches(readme, written) == []
    # the check itself, on copies of the README: the figures of its first two rows swapped
    # (the names kept; every sigma differs), or one figure of its third row changed
    lines = readme.splitlines()
    top = lines.index(next(line for line in lines
                           if line.startswith('| PSNR (dB), 68 BSD68 images |')))
    first, second, third = top + 2, top + 3, top + 4
    name, figures = zip(*(lines[i][1:].split('|', 1) for i in (first, second)))
    swapped = lines.copy()
    swapped[first], swapped[second] = f'|{name[0]}|{figures[1]}', f'|{name[1]}|{figures[0]}'
    assert len(noise_table_mismatches('\n'.join(swapped), written)) >= 12
    edited = lines.copy()
    edited[third] = re.sub(r'\d+\.\d\d', lambda m: f'{float(m.group()) + 0.01:.2f}',
                           lines[third], count=1)
    assert len(noise_table_mismatches('\n'.join(edited), written)) == 1

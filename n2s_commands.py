"""The console commands of an installed package (pyproject.toml): `n2s-train` runs train.py,
`n2s-denoise` test_single.py, and so on, with the scripts' own flags, errors and exit codes.
The scripts are loaded from their files beside this one: `test.py` as a module named `test`
would be the standard library's test package. Run outside the clone (no trained_models/ in
the working directory), the commands that read models read the clone's (`--model-dir` given
overrides it); trained models go where --model-dir says, as with the scripts."""
import importlib.util
import os
import sys
from typing import Callable

from n2s_app import cli

HERE = os.path.dirname(os.path.abspath(__file__))


READS_MODELS = ('test', 'test_pro', 'test_single', 'demo', 'export')


def _command(script: str) -> Callable[[], None]:
    def run() -> None:
        if script in READS_MODELS and not os.path.isdir(cli.MODEL_DIR) and not any(
                a == '--model-dir' or a.startswith('--model-dir=') for a in sys.argv[1:]):
            sys.argv[1:1] = ['--model-dir', os.path.join(HERE, 'trained_models')]
        spec = importlib.util.spec_from_file_location(f'n2s_script_{script}',
                                                      os.path.join(HERE, f'{script}.py'))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        cli.run(module.main)
    run.__doc__ = f'python {script}.py, as a console command'
    return run


train = _command('train')
train_pro = _command('train_pro')
test = _command('test')
test_pro = _command('test_pro')
test_single = _command('test_single')
demo = _command('demo')
export = _command('export')
download = _command('download')

"""Speed of the web demo: seconds per request of the real server (demo.py) over HTTP.

    python -m benchmarks.web                 # default model, 481x321 grey, every request a new size

After one warm-up request, --requests uploads of grey 8-bit PNGs of about 481x321 pixels are
sent one after the other, each of a size not seen before (481x321, 321x481, 480x322, ...), as
web uploads come; the time is the client's, from upload to the denoised file's path.
"""
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Iterator, List, Optional

import numpy as np

from n2s_app import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_demo(model_dir: str, data_dir: str, timeout: float = 180,
                 env: Optional[dict] = None) -> Iterator[str]:
    """demo.py serving on a free localhost port (with `env` added to its environment);
    yields its URL and stops it on exit."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, 'demo.py'), '--port', str(port), '--model-dir',
         model_dir, '--data-dir', data_dir], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
        env={**os.environ, 'GRADIO_ANALYTICS_ENABLED': 'False', **(env or {})})
    url, deadline = f'http://127.0.0.1:{port}/', time.time() + timeout
    try:
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if process.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"demo.py did not start: {process.stdout.read()[-2000:]}") \
                        from None
                time.sleep(1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def sizes(count: int) -> List[tuple]:
    """(height, width) near 481x321, all different: the two BSD68 shapes first."""
    out = [(481, 321), (321, 481)]
    k = 1
    while len(out) < count:
        out += [(481 - k, 321 + k), (321 + k, 481 - k)]
        k += 1
    return out[:count]


def main(argv: Optional[List[str]] = None) -> None:
    p = cli.new_parser(__doc__)
    p.add_argument('--model', default=cli.DEFAULT_MODEL, help='model directory name')
    p.add_argument('--model-dir', default=cli.MODEL_DIR, help='folder of the model directories')
    p.add_argument('--data-dir', default=cli.DATA_DIR, help='where the examples are built')
    p.add_argument('--requests', type=cli.positive_int, default=10, help='timed requests')
    args = p.parse_args(argv)
    from gradio_client import Client, handle_file
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder, running_demo(
            os.path.abspath(args.model_dir), os.path.abspath(args.data_dir)) as url:
        from PIL import Image
        client = Client(url, verbose=False)
        times = []
        for i, shape in enumerate([(200, 300)] + sizes(args.requests)):
            path = os.path.join(folder, f'upload{i}.png')
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
            start = time.perf_counter()
            client.predict(handle_file(path), args.model, 0, False, False, api_name='/denoise')
            if i:  # the first request is the warm-up (model loading)
                times.append(time.perf_counter() - start)
    print(f"web demo, model {args.model}, {len(times)} grey uploads near 481x321, each a new size: "
          f"mean {statistics.mean(times):.2f} s, median {statistics.median(times):.2f} s, "
          f"max {max(times):.2f} s per request")


if __name__ == '__main__':
    cli.run(main)

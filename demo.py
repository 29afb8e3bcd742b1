"""Web demo: a page that denoises an uploaded image (as the original Noise2Same's demo.py).

    python demo.py                       # http://127.0.0.1:7860, models from trained_models/
    python demo.py --port 8080 --share   # also a temporary public link (Gradio's share service)

Needs the web extras: pip install -r requirements-web.txt (or make web). Upload a PNG, JPEG or
TIFF, or pick an example; choose a model; optionally add Gaussian noise to a clean picture to
see PSNR and SSIM; drag the slider to compare input and output; download the result.

Bounded for a server left running: uploads over 200 MB are refused before they are stored, and
the demo's files (Gradio's cached uploads and views, the results) are pruned after each request
to the newest 48 (about the last 10 requests) and to none older than an hour.
"""
import os
import tempfile
from typing import List, Optional

from n2s_app import cli


def main(argv: Optional[List[str]] = None) -> None:
    p = cli.new_parser(__doc__)
    p.add_argument('--host', default='127.0.0.1', help='address to serve on (0.0.0.0: all)')
    p.add_argument('--port', type=cli.positive_int, default=7860, help='port to serve on')
    p.add_argument('--share', action='store_true', help='also create a public share link')
    p.add_argument('--model-dir', default=cli.MODEL_DIR, help='folder of the model directories')
    p.add_argument('--data-dir', default=cli.DATA_DIR, help='where the examples are built')
    args = p.parse_args(argv)
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise OSError("the web demo needs Gradio: pip install -r requirements-web.txt "
                      "(or make web)") from None
    cli.start_tensorflow(training=False)
    from gradio.utils import get_upload_folder

    from n2s_app.web_demo import MAX_UPLOAD, DenoiseService, build_app, example_images
    cache = get_upload_folder()  # Gradio's uploads, and our results inside it
    os.makedirs(cache, exist_ok=True)
    service = DenoiseService(args.model_dir, tempfile.mkdtemp(prefix='n2s-results-', dir=cache),
                             cache_dir=cache)
    app = build_app(service, example_images(args.data_dir))
    print(f'serving on http://{args.host}:{args.port} (Ctrl-C to stop)', flush=True)
    app.queue().launch(server_name=args.host, server_port=args.port, share=args.share,
                       allowed_paths=[service.out_dir], max_file_size=MAX_UPLOAD)


if __name__ == '__main__':
    cli.run(main)

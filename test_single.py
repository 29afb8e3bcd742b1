"""Denoise one image file (PNG, JPEG or TIFF; 8- or 16-bit; grey, RGB, RGBA or palette) with a
trained model; writes the denoised image (same dtype, clipped) and a side-by-side figure.

    python test_single.py photo.png                      # -> photo_denoised.png, photo_figure.png
    python test_single.py scan.tif --name N2S-3000 --output out/scan_clean.tif --show
"""
import os
from typing import List, Optional

from utils import cli
from utils import image_utils



def main(argv: Optional[List[str]] = None) -> None:
    p = cli.new_parser(__doc__)
    p.add_argument('image', help='input image file (never modified)')
    p.add_argument('--model-dir', default=cli.MODEL_DIR, help='folder of the model directories')
    p.add_argument('--name', default=cli.DEFAULT_MODEL,
                   help=f'model directory name (default: {cli.DEFAULT_MODEL}, the best shipped '
                        f'model)')
    p.add_argument('--output', default=None, help='denoised image (default: <image>_denoised '
                                                  'with the input\'s extension, beside it)')
    p.add_argument('--figure', default=None, help='figure PNG (default: <image>_figure.png)')
    p.add_argument('--show', action='store_true', help='also open the figure in a window')
    p.add_argument('--tile-size', type=cli.positive_int, default=512,
                   help=f'tile size for images over {image_utils.TILE_ABOVE} pixels')
    p.add_argument('--margin', type=cli.positive_int, default=32, help='tile overlap / 2')
    p.add_argument('--tta', action='store_true',
                   help='test-time self-ensemble over the 8 flips and rotations (8x the time)')
    cli.add_precision_flag(p)
    args = p.parse_args(argv)

    stem, suffix = os.path.splitext(args.image)
    output = args.output or f'{stem}_denoised{suffix}'
    figure = args.figure or f'{stem}_figure.png'
    for path in (output, figure):
        if os.path.exists(args.image) and os.path.abspath(path) == os.path.abspath(args.image):
            raise ValueError(f"output {path} is the input image; choose another --output")
        image_utils.check_writable(path)
    image = image_utils.read_image(args.image)
    image_utils.check_format(output, image.dtype)
    cli.require_checkpoint(args.model_dir, args.name, f'python train.py --name {args.name}')

    cli.start_tensorflow(training=False)
    from models import Noise2Same
    model = Noise2Same(args.model_dir, args.name, precision=args.precision)
    x, denoised = image_utils.denoise(model, image, args.tile_size, args.margin, args.tta)
    image_utils.write_image_atomic(output, image_utils.output_pixels(denoised, image))
    image_utils.save_figure_atomic(figure, x, image_utils.to_dtype(denoised, image.pixels),
                                   args.show, title=f'{args.name}: {os.path.basename(args.image)}')
    print(f'wrote {output} and {figure}')


if __name__ == '__main__':
    cli.run(main)

"""Mean PSNR of a Noise2SamePro model on the test set (default: the original test_pro.py's
model trained_models/N2S_PRO-8000-2 on BSD68, or the demo set when BSD68 is absent).

    python test_pro.py --verbose --csv results/n2sp.csv
"""
from n2s_app import cli
from n2s_app.evaluate import test_main


def main(argv=None):
    test_main(argv, __doc__, name='N2S_PRO-8000-2', train_command='python train_pro.py')


if __name__ == '__main__':
    cli.run(main)

"""Mean PSNR of a Noise2Same model on the test set (default: the original test.py's model
trained_models/N2S-3000 on BSD68, or the demo set when BSD68 is absent).

    python test.py --verbose --csv results/n2s.csv
"""
from n2s_app import cli
from n2s_app.evaluate import test_main


def main(argv=None):
    test_main(argv, __doc__, name='N2S-3000', train_command='python train.py')


if __name__ == '__main__':
    cli.run(main)

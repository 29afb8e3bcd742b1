"""Helpers of the Noise2Same port: training input pipeline, prediction, evaluation,
checkpoints, data sets and the scripts' shared command-line code."""
import os

# TensorFlow leaves its oneDNN CPU kernels off on CPUs without AVX-512 (e.g. AMD Zen), where they
# make training about 30 % faster. Set here (and in models.py) because whichever of the two is
# imported first imports TensorFlow; set TF_ENABLE_ONEDNN_OPTS=0 beforehand to opt out.
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

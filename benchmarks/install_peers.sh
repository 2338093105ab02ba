#!/usr/bin/env bash
# Peer libraries for benchmarks/peers.py only (never runtime or CI requirements).
# Both are installed without their dependency pins, which do not resolve on Python 3.11:
# - adv-lib imports visdom only for an optional progress logger; benchmarks/peers.py stubs it.
# - perceptual-advex pins statsmodels==0.11.1, robustness and advex-uar (training code only);
#   benchmarks/peers.py shims those imports and its old torchvision.models.utils import.
set -euo pipefail
python -m pip install --no-deps adv-lib==0.2.8 perceptual-advex==0.2.6

"""Test set-up: the repo root on sys.path and two fake CPU devices for the whole session.

Two devices make every pmapped step in the tests a real data-parallel step; single-device
runs use `devices=jax.local_devices()[:1]`.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # pylint: disable=g-import-not-at-top

jax.config.update("jax_num_cpu_devices", 2)

"""Writers of tiny paired datasets in every supported layout, for the tests.

Each pair's input is a random image seeded by its key and its target is 255 - input,
so a test can tell whether two stored images are partners (PNG is lossless).
"""

import os
import zlib

import numpy as np
from PIL import Image

SIZE = 40  # side of each image (aligned files are 2*SIZE wide).


def pair_images(key: str, size: int = SIZE, channels: int = 3):
  """(input, target) uint8 arrays of pair `key`: target = 255 - input."""
  rng = np.random.default_rng(zlib.crc32(key.encode()))
  shape = (size, size, channels) if channels > 1 else (size, size)
  image = rng.integers(0, 256, size=shape, dtype=np.uint8)
  return image, 255 - image


def save(array: np.ndarray, path: str) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path)
  return path


def write_aligned(root: str, counts: dict[str, int], ext: str = "png") -> str:
  """root/<split>/<i>.<ext>: input | target side by side ("" split: directly in root)."""
  for split, count in counts.items():
    for i in range(count):
      a, b = pair_images(f"{split}{i}")
      save(np.concatenate([a, b], axis=1), os.path.join(root, split, f"{i}.{ext}"))
  return root


def write_folders(root: str, counts: dict[str, int], *, input_dir="A", target_dir="B",
                  input_name="{}", target_name="{}", ext="png") -> str:
  """root/<split>/<input_dir>/<input_name>.<ext> and the same for targets."""
  for split, count in counts.items():
    for i in range(count):
      a, b = pair_images(f"{split}{i}")
      save(a, os.path.join(root, split, input_dir, input_name.format(i) + "." + ext))
      save(b, os.path.join(root, split, target_dir, target_name.format(i) + "." + ext))
  return root


def write_split_inside_folders(root: str, counts: dict[str, int]) -> str:
  """root/A/<split>/<i>.png and root/B/<split>/<i>.png (the reference's combine_A_and_B)."""
  for split, count in counts.items():
    for i in range(count):
      a, b = pair_images(f"{split}{i}")
      save(a, os.path.join(root, "A", split, f"{i}.png"))
      save(b, os.path.join(root, "B", split, f"{i}.png"))
  return root


def write_raindrop(root: str, counts=None) -> str:
  """Qian et al.: <split>/data/<i>_rain.png|jpg and <split>/gt/<i>_clean.png|jpg."""
  counts = counts or {"train": 6, "test_a": 3, "test_b": 2}
  for split, count in counts.items():
    for i in range(count):
      a, b = pair_images(f"{split}{i}")
      # Mixed extensions, as in the real data set (pairs are matched by stem).
      ext = "jpg" if (split, i) == ("train", 0) else "png"
      save(a, os.path.join(root, split, "data", f"{i}_rain.{ext}"))
      save(b, os.path.join(root, split, "gt", f"{i}_clean.{ext}"))
  return root


def write_rain100(root: str, counts=None, subfolders: bool = False) -> str:
  """rain-N.png / norain-N.png in one folder (or rain/ and norain/) per split."""
  counts = counts or {"train": 6, "test": 2}
  for split, count in counts.items():
    for i in range(1, count + 1):
      a, b = pair_images(f"{split}{i}")
      folder = os.path.join(root, split)
      save(a, os.path.join(folder, "rain" if subfolders else "", f"rain-{i}.png"))
      save(b, os.path.join(folder, "norain" if subfolders else "", f"norain-{i}.png"))
  return root

"""Tests of the input pipeline: step -> batch rule, preprocessing, eval batches, workers."""

import io

import numpy as np
from PIL import Image
import pytest

from configs import default
from pix2pix_jax import datasets
from pix2pix_jax import input_pipeline


def tiny_config(cache_dir, **overrides):
  config = default.get_config("tiny")
  config.num_train_steps = 20
  config.data.cache_dir = str(cache_dir)
  config.data.synthetic.num_train = 5  # a few epochs within the steps.
  config.data.synthetic.num_test = 3
  config.update_from_flattened_dict(overrides)
  return config


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def sources(cache_dir):
  config = tiny_config(cache_dir)
  return datasets.get_data_sources(config.data, seed=config.seed)


def png(image: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="PNG")
  return buffer.getvalue()


def gradient_source(num_examples=4, size=36, same_a_b=True):
  """A list source of (A, B) images with distinct rows and columns; A == B if asked."""
  rng = np.random.default_rng(0)
  examples = []
  for i in range(num_examples):
    a = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    b = a if same_a_b else 255 - a
    examples.append({"A": png(a), "B": png(b), "name": f"ex{i}".encode()})
  return examples


def assert_batches_equal(x, y):
  assert x.keys() == y.keys()
  for key in x:
    np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_batch_dtypes_shapes_and_range(cache_dir, sources):
  config = tiny_config(cache_dir)
  batch = input_pipeline.create_train_dataset(config, sources)[0]
  crop, b = config.data.crop_size, config.batch_size
  for key in ("input", "target"):
    assert batch[key].dtype == np.float32
    assert batch[key].shape == (b, crop, crop, config.model.input_channels)
    assert -1.0 <= batch[key].min() < batch[key].max() <= 1.0
  assert batch["index"].dtype == np.int32
  np.testing.assert_array_equal(batch["index"], np.arange(b))
  assert not np.array_equal(batch["input"], batch["target"])  # rainy vs clean.


def test_same_seed_same_batches_other_seed_other_batches(cache_dir, sources):
  config = tiny_config(cache_dir)
  first = input_pipeline.create_train_dataset(config, sources)
  again = input_pipeline.create_train_dataset(config, sources)
  other = input_pipeline.create_train_dataset(tiny_config(cache_dir, seed=1), sources)
  for step in (0, 7):
    assert_batches_equal(first[step], again[step])
    assert first[step]["input"].tobytes() == again[step]["input"].tobytes()
    assert not np.array_equal(first[step]["input"], other[step]["input"])


def test_each_epoch_is_a_permutation(cache_dir, sources):
  n = len(sources["train"])
  order = [input_pipeline.example_index(p, n, seed=0) for p in range(3 * n)]
  for epoch in range(3):
    assert sorted(order[epoch * n:(epoch + 1) * n]) == list(range(n))
  assert order[:n] != order[n:2 * n]  # reshuffled each epoch.


def test_step_alone_fixes_the_batch(cache_dir, sources):
  config = tiny_config(cache_dir)
  dataset = input_pipeline.create_train_dataset(config, sources)
  assert len(dataset) == config.num_train_steps
  for start in (0, 3, 11):
    batches = input_pipeline.train_batches(config, sources["train"], start_step=start)
    with batches:
      for step in range(start, start + 3):
        batch = next(batches)
        np.testing.assert_array_equal(
            batch["index"], np.arange(step * config.batch_size, (step + 1) * config.batch_size))
        assert_batches_equal(batch, dataset[step])
    assert_batches_equal(dataset[start:][0], dataset[start])


def test_processes_split_the_global_batch(cache_dir, sources):
  config = tiny_config(cache_dir, batch_size=4)
  whole = input_pipeline.create_train_dataset(config, sources)
  parts = [input_pipeline.create_train_dataset(
      config, sources["train"], process_index=i, process_count=2) for i in range(2)]
  for step in (0, 1, 9):
    assert parts[0][step]["index"].shape == (2,)
    joined = {k: np.concatenate([p[step][k] for p in parts]) for k in whole[step]}
    assert_batches_equal(joined, whole[step])


def test_batch_not_divisible_by_process_count_is_an_error(cache_dir, sources):
  config = tiny_config(cache_dir, batch_size=3)
  with pytest.raises(ValueError, match="batch_size=3.*process count 2"):
    input_pipeline.create_train_dataset(config, sources, process_index=0, process_count=2)


def test_crop_and_flip_are_the_same_for_input_and_target(tmp_path):
  config = tiny_config(tmp_path, **{"data.load_size": 48, "data.crop_size": 32})
  source = gradient_source(same_a_b=True)
  dataset = input_pipeline.create_train_dataset(config, source)
  crops = set()
  for step in range(len(dataset)):
    batch = dataset[step]
    np.testing.assert_array_equal(batch["input"], batch["target"])
    crops.update(x.tobytes() for x in batch["input"])
  assert len(crops) > len(source)  # the jitter varies per position.


def test_flip_mirrors_and_no_flip_does_not(tmp_path):
  # load_size == crop_size: no crop, so each example is either itself or its mirror.
  config = tiny_config(tmp_path, **{"data.load_size": 36, "data.crop_size": 36})
  source = gradient_source()
  plain = np.concatenate([batch["input"] for batch in input_pipeline.eval_batches(
      config, source, batch_size=len(source))])
  mirrored = 0
  for flip in (True, False):
    config.data.flip = flip
    dataset = input_pipeline.create_train_dataset(config, source)
    for step in range(len(dataset)):
      batch = dataset[step]
      for position, image in zip(batch["index"], batch["input"]):
        original = plain[input_pipeline.example_index(int(position), len(source), 0)]
        is_mirror = np.array_equal(image, original[:, ::-1])
        assert is_mirror or np.array_equal(image, original)
        assert flip or not is_mirror
        mirrored += is_mirror
  assert 0 < mirrored < len(dataset) * config.batch_size


def test_btoa_swaps_input_and_target(tmp_path):
  config = tiny_config(tmp_path)
  source = gradient_source(same_a_b=False)
  a_to_b = input_pipeline.create_train_dataset(config, source)[2]
  config.data.direction = "BtoA"
  b_to_a = input_pipeline.create_train_dataset(config, source)[2]
  np.testing.assert_array_equal(a_to_b["input"], b_to_a["target"])
  np.testing.assert_array_equal(a_to_b["target"], b_to_a["input"])
  assert not np.array_equal(a_to_b["input"], a_to_b["target"])


def test_eval_batches(cache_dir, sources):
  config = tiny_config(cache_dir)
  batches = list(input_pipeline.eval_batches(config, sources["test"], batch_size=2))
  assert [b["index"].tolist() for b in batches] == [[0, 1], [2]]
  crop = config.data.crop_size
  assert batches[0]["input"].shape == (2, crop, crop, 3)
  assert batches[0]["input"].dtype == np.float32
  assert -1.0 <= batches[0]["input"].min() and batches[0]["input"].max() <= 1.0
  again = list(input_pipeline.eval_batches(config, sources["test"], batch_size=2))
  for x, y in zip(batches, again):
    assert_batches_equal(x, y)
  first = list(input_pipeline.eval_batches(config, sources["test"], batch_size=4,
                                           max_examples=1))
  assert len(first) == 1
  assert_batches_equal(first[0], {k: v[:1] for k, v in batches[0].items()})


def test_worker_processes_give_the_same_batches(cache_dir, sources):
  config = tiny_config(cache_dir)
  expected = input_pipeline.create_train_dataset(config, sources)
  config.data.num_workers = 1
  with input_pipeline.train_batches(config, sources["train"], start_step=5) as batches:
    for step in range(5, 9):
      assert_batches_equal(next(batches), expected[step])


# ------------------------------------------------------------------ data.preprocess


def wide_source(num_examples=3, height=40, width=60):
  """A list source of random (height, width) images with A == B."""
  rng = np.random.default_rng(1)
  return [{"A": png(a), "B": png(a), "name": f"w{i}".encode()} for i, a in enumerate(
      rng.integers(0, 256, size=(num_examples, height, width, 3), dtype=np.uint8))]


def to_uint8(image):
  return np.round((image + 1) * 127.5).astype(np.uint8)


def is_window_of(window, image):
  """Whether `window` (h, w, C) is a sub-array of `image`, possibly mirrored."""
  h, w = window.shape[:2]
  for candidate in (image, image[:, ::-1]):
    for top in range(candidate.shape[0] - h + 1):
      for left in range(candidate.shape[1] - w + 1):
        if np.array_equal(candidate[top:top + h, left:left + w], window):
          return True
  return False


def test_preprocess_crop_takes_windows_of_the_stored_image(tmp_path):
  config = tiny_config(tmp_path, **{"data.preprocess": "crop"})
  source = wide_source()
  originals = [np.asarray(Image.open(io.BytesIO(e["A"]))) for e in source]
  batch = input_pipeline.create_train_dataset(config, source)[0]
  assert batch["input"].shape == (8, 32, 32, 3)
  np.testing.assert_array_equal(batch["input"], batch["target"])
  for position, image in zip(batch["index"], batch["input"]):
    original = originals[input_pipeline.example_index(int(position), len(source), 0)]
    assert is_window_of(to_uint8(image), original)
  (test,) = input_pipeline.eval_batches(config, source[:1], batch_size=1)
  np.testing.assert_array_equal(to_uint8(test["input"][0]), originals[0][4:36, 14:46])


def test_preprocess_scale_width_keeps_the_aspect(tmp_path):
  config = tiny_config(tmp_path, **{"data.preprocess": "scale_width",
                                    "data.load_size": 48})
  assert input_pipeline.scale_width_size(60, 40, 48, 32) == (48, 32)
  assert input_pipeline.scale_width_size(60, 20, 48, 32) == (48, 32)  # at least the crop.
  assert input_pipeline.scale_width_size(40, 60, 48, 32) == (48, 72)
  source = wide_source()
  batch = input_pipeline.create_train_dataset(config, source)[0]
  assert batch["input"].shape == (8, 32, 32, 3)
  (test,) = input_pipeline.eval_batches(config, source, batch_size=3)
  assert test["input"].shape == (3, 32, 32, 3)


def test_preprocess_scale_width_and_crop_crops_the_width_scaled_image(tmp_path):
  # The reference's __scale_width truncates: 286 * 480 / 720 = 190.67 -> 190.
  assert input_pipeline.scale_width_size(720, 480, 286, 32) == (286, 190)
  config = tiny_config(tmp_path, **{"data.preprocess": "scale_width_and_crop",
                                    "data.load_size": 48})
  for height, width, scaled in ((40, 60, (48, 32)), (60, 40, (48, 72))):
    source = wide_source(height=height, width=width)
    scaled_images = [input_pipeline.resize(Image.open(io.BytesIO(e["A"])), scaled)
                     for e in source]
    assert scaled_images[0].shape == (scaled[1], scaled[0], 3)
    batch = input_pipeline.create_train_dataset(config, source)[0]
    assert batch["input"].shape == (8, 32, 32, 3)
    for position, image in zip(batch["index"], batch["input"]):
      index = input_pipeline.example_index(int(position), len(source), 0)
      assert is_window_of(to_uint8(image), scaled_images[index])
    (test,) = input_pipeline.eval_batches(config, source[:1], batch_size=1)
    assert test["input"].shape == (1, 32, 32, 3)


def test_preprocess_none_uses_the_stored_image(tmp_path):
  config = tiny_config(tmp_path, **{"data.preprocess": "none"})
  source = wide_source(height=32, width=32)
  originals = [np.asarray(Image.open(io.BytesIO(e["A"]))) for e in source]
  batch = input_pipeline.create_train_dataset(config, source)[1]
  for position, image in zip(batch["index"], batch["input"]):
    original = originals[input_pipeline.example_index(int(position), len(source), 0)]
    assert (np.array_equal(to_uint8(image), original)
            or np.array_equal(to_uint8(image), original[:, ::-1]))


def test_unknown_preprocess_is_an_error(tmp_path):
  config = tiny_config(tmp_path, **{"data.preprocess": "zoom"})
  with pytest.raises(ValueError, match="data.preprocess='zoom'"):
    input_pipeline.Preprocessing.from_config(config)

"""The configuration docs come from the config: every key has help text, and the table of
docs/configuration.md is what `python -m configs.config_docs` generates (no JAX needed)."""

from configs import config_docs
from configs import default


def test_every_config_key_has_help_text_and_help_names_only_config_keys():
  keys = {key for key, _ in config_docs.leaves(default.get_config())}
  missing = sorted(key for key in keys if not default.HELP.get(key, "").strip())
  unknown = sorted(set(default.HELP) - keys)
  assert not missing, f"config keys without help text in configs/default.py: {missing}"
  assert not unknown, f"HELP names keys that get_config() lacks: {unknown}"


def test_variants_add_no_keys():
  keys = {key for key, _ in config_docs.leaves(default.get_config())}
  for variant in ("tiny", "cpu"):
    assert {key for key, _ in config_docs.leaves(default.get_config(variant))} == keys, variant


def test_docs_table_matches_the_config():
  with open(config_docs.DOCS_PATH, encoding="utf-8") as f:
    page = f.read()
  assert config_docs.with_table(page) == page, (
      "docs/configuration.md's table differs from configs/default.py: run "
      "`python -m configs.config_docs` (`--check` shows the difference).")


def test_check_fails_on_a_stale_table(tmp_path, monkeypatch, capsys):
  with open(config_docs.DOCS_PATH, encoding="utf-8") as f:
    page = f.read()
  stale = tmp_path / "configuration.md"
  stale.write_text(page.replace("| `seed` | 0 |", "| `seed` | 1 |"), encoding="utf-8")
  monkeypatch.setattr(config_docs, "DOCS_PATH", str(stale))
  assert config_docs.main(["--check"]) == 1
  assert "| `seed` | 1 |" in capsys.readouterr().out
  assert config_docs.main([]) == 0  # regenerates it
  assert stale.read_text(encoding="utf-8") == page


def test_values_render_as_written_in_code():
  render = config_docs.render_value
  assert [render(v) for v in (2e-4, 0.5, 100.0, 0.02, 0.999, 1e-5)] == [
      "2e-4", "0.5", "100", "0.02", "0.999", "1e-5"]
  assert [render(v) for v in ("", "auto", True, 200_000)] == ['`""`', "`auto`", "True", "200000"]

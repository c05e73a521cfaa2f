import pytest

from dermsight.config import load_config, parse_override
from dermsight.errors import ConfigError


def test_defaults_file_overrides_precedence(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("prepare:\n  workers: 3\n  seed: 5\n  split:\n    val_fraction: 0.2\n")
    cfg = load_config(cfg_file, ["prepare.seed=9"]).prepare
    assert cfg.workers == 3  # file beats default
    assert cfg.seed == 9  # override beats file
    assert cfg.split.val_fraction == 0.2
    assert cfg.split.test_fraction == 0.15  # default kept


@pytest.mark.parametrize("override, where", [
    ("prepare.nope=1", "prepare.nope"),
    ("prepare.split.bogus=true", "prepare.split.bogus"),
    ("nothing=1", "nothing"),
])
def test_unknown_keys_are_errors(override, where):
    with pytest.raises(ConfigError, match=rf"{where}: unknown key"):
        load_config(None, [override])


def test_unknown_key_in_file_names_the_file(tmp_path):
    cfg_file = tmp_path / "bad.yaml"
    cfg_file.write_text("prepare:\n  wrokers: 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*\n.*prepare.wrokers: unknown key"):
        load_config(cfg_file)


def test_bad_value_is_an_error():
    with pytest.raises(ConfigError, match="prepare.split.val_fraction"):
        load_config(None, ["prepare.split.val_fraction=1.5"])


def test_override_parsing():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert parse_override("a=text") == (["a"], "text")
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("novalue")


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")


def test_root_required_except_for_synthetic():
    assert load_config().prepare.resolved_root().endswith("synthetic")
    with pytest.raises(ConfigError, match="needs a dataset root"):
        load_config(None, ["prepare.source=ham10000"]).prepare.resolved_root()


def test_tta_modes_and_the_bool_of_older_configs():
    assert load_config(None, ["train.tta=true"]).train.tta == "hflip"
    assert load_config(None, ["train.tta=false"]).train.tta == "none"
    assert load_config(None, ["train.tta=d4"]).train.tta == "d4"
    with pytest.raises(ConfigError, match="train.tta.*none, hflip, flips, d4"):
        load_config(None, ["train.tta=sideways"])


@pytest.mark.parametrize("override,field", [("data.augment.rotate90=0.5", "data.augment.rotate90"),
                                            ("train.tta=d4", "train.tta d4")])
def test_quarter_turns_need_a_square_input(override, field):
    with pytest.raises(ConfigError, match=f"{field} needs a square data.input_size"):
        load_config(None, ["data.input_size=[64, 96]", override])
    load_config(None, ["data.input_size=[64, 64]", override])  # square: fine

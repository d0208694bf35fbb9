"""params.yaml: read as DVC writes it (YAML 1.2), every value typed, typos refused with a hint,
defaults in one place."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertclf.config import SECTIONS, Config, load_config, read_yaml, section_from, to_dict
from bertclf.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_params_yaml_holds_exactly_the_defaults() -> None:
    assert read_yaml(REPO / "params.yaml") == to_dict(Config())
    assert load_config(REPO / "params.yaml") == Config()


def test_learning_rates_as_dvc_writes_them_are_numbers(tmp_path: Path) -> None:
    """`dvc exp run -S train.lr=3e-5` writes `lr: 3e-05`: a float in YAML 1.2, a string to PyYAML."""
    text = (REPO / "params.yaml").read_text().replace("  lr: 0.002", "  lr: 3e-05")
    text = text.replace("  lr: 5.0e-05", "  lr: 2e-5")
    (tmp_path / "params.yaml").write_text(text)
    config = load_config(tmp_path / "params.yaml")
    assert config.train.lr == 3e-05 and config.pretrain.lr == 2e-05


@pytest.mark.parametrize(("section", "values", "message"), [
    ("train", {"dropuot": 0.3}, "unknown key train.dropuot; did you mean han.dropout or bigru.dropout"),
    ("train", {"dropout": 0.3}, "unknown key train.dropout; did you mean han.dropout"),
    ("han", {"hiden": 8}, "unknown key han.hiden; did you mean han.hidden?"),
    ("train", {"lr": "3e-05"}, "train.lr='3e-05' must be a number (write the number without quotes)"),
    ("train", {"epochs": 2.5}, "train.epochs=2.5 must be an integer"),
    ("train", {"train_on_val": "yes"}, "train.train_on_val='yes' must be true or false"),
    ("han", {"norm": "lyer"}, "han.norm='lyer' must be one of none, layer, batch"),
    ("cnn", {"filter_widths": [3, "a"]}, "cnn.filter_widths=[3, 'a'] must be a list of integers"),
    ("split", {"max_train": "all"}, "split.max_train='all' must be an integer or null"),
    ("split", {"val_fraction": 1.5}, "split.val_fraction=1.5 must be in [0, 1)"),
    ("han", {"dropout": 1.0}, "dropout=1.0 must be in [0, 1)"),
])
def test_bad_values_and_typos_name_the_key_the_value_and_what_to_do(section: str, values: dict,
                                                                    message: str) -> None:
    with pytest.raises(ConfigError) as err:
        section_from(section, values)
    assert message in str(err.value)


def test_unknown_sections_are_refused_before_any_work(tmp_path: Path) -> None:
    text = (REPO / "params.yaml").read_text() + "\ntrian:\n  lr: 0.1\n"
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"p\.yaml: unknown section 'trian'; did you mean train\?"):
        load_config(tmp_path / "p.yaml")


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("train:\n  lr: [0.1\n  epochs: 3\n")
    with pytest.raises(ConfigError, match=r"p\.yaml, line \d+: not valid YAML"):
        load_config(tmp_path / "p.yaml")


def test_replace_checks_dotted_overrides() -> None:
    config = Config().replace({"train.arch": "cnn", "cnn.num_filters": 7})
    assert config.model == config.cnn and config.cnn.num_filters == 7
    with pytest.raises(ConfigError, match="did you mean train"):
        Config().replace({"trian.lr": 0.1})


def test_every_section_has_a_typed_dataclass_with_defaults() -> None:
    for name, cls in SECTIONS.items():
        assert section_from(name, {}) == cls(), name


def test_a_yaml_alias_bomb_in_a_value_gives_a_short_error(tmp_path: Path) -> None:
    """Nine levels of aliases, each nine of the last: a value of 9**9 strings, named in a line."""
    levels = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  lr:\n" + "".join(f"    {line}\n" for line in levels))
    with pytest.raises(ConfigError) as caught:
        load_config(params)
    assert len(str(caught.value)) < 300 and "train.lr=" in str(caught.value), str(caught.value)[:300]

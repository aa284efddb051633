"""Config loading: defaults, the TOML file, the environment, and errors that name the key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from bot.config import _SECTIONS, Config, ConfigError, Secret, listen_address, load_config

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file() -> None:
    config = load_config(None, environ={})
    assert config == Config()
    assert config.data_dir == Path("data")
    assert config.telegram_token is None


def test_example_file_documents_every_key_with_its_default() -> None:
    example = tomllib.loads((REPO / "config.example.toml").read_text(encoding="utf-8"))
    config = load_config(REPO / "config.example.toml", environ={})
    assert config == Config()
    defaults = Config()
    for section in _SECTIONS:
        expected = {name for name in getattr(defaults, section).__dataclass_fields__}
        assert set(example[section]) == expected, section
    assert {"data_dir", "log_level"} <= set(example)


def test_id_lists_and_class_tables_are_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[telegram]\nadmin_ids = [42, "43"]\n[image_filter.blocked_classes]\nFACE_FEMALE = 0.3\n',
    )
    config = load_config(path, environ={})
    assert config.telegram.admin_ids == ("42", "43")
    assert config.image_filter.blocked_classes == {"FACE_FEMALE": 0.3}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[telegram]\nadmin_ids = 42\n", "telegram.admin_ids = 42 is not allowed"),
        ('[telegram]\nadmin_ids = ["@bob"]\n', "numeric Telegram user ids"),
        ("[image_filter.blocked_classes]\nFACE_MALE = 2\n", "thresholds above 0, at most 1"),
        ('[image_filter]\nblocked_classes = {FACE_MALE = "high"}\n', "a table of numbers"),
        ('[discord]\ngateway_url = "http://x"\n', "a ws(s) URL"),
        ('[consent]\nversion = "2026 spring edition"\n', "1 to 32 letters, digits"),
    ],
)
def test_bad_lists_and_tables_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(write(tmp_path, text), environ={})


def test_file_values_are_read(tmp_path: Path) -> None:
    path = write(
        tmp_path, 'data_dir = "/srv/booth"\n[intake]\nmax_photos = 12\nmin_sharpness = 10\n'
    )
    config = load_config(path, environ={})
    assert config.data_dir == Path("/srv/booth")
    assert config.intake.max_photos == 12
    assert config.intake.min_sharpness == 10.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[intake]\nmax_photos = 0\n", "intake.max_photos = 0 is out of range; allowed: 1 to 200"),
        (
            '[intake]\nmax_photos = "ten"\n',
            "intake.max_photos = 'ten' is not allowed; expected a whole number",
        ),
        ("[intake]\nbogus = 1\n", "unknown key 'intake.bogus'"),
        ('log_level = "LOUD"\n', "log_level = 'LOUD' is out of range; allowed: one of DEBUG"),
        ('[training]\nmethod = "dreambooth"\n', "allowed: one of lora, textual_inversion, pivotal"),
        ('log_format = "xml"\n', "log_format = 'xml' is out of range; allowed: one of text, json"),
        ('[operations]\nlisten = "9464"\n', "operations.listen = '9464' is out of range"),
        ('[operations]\nlisten = "host:99999"\n', 'allowed: "" (off) or HOST:PORT'),
        ('[model]\nfamily = "flux9"\n', "model.family = 'flux9' is out of range"),
        ("intake = 3\n", "intake: expected a table, got 3"),
        ("data_dir = 5\n", "data_dir = 5 is not allowed; expected a path"),
        ("[intake\n", "is not valid TOML"),
    ],
)
def test_bad_values_name_key_value_and_what_is_allowed(
    tmp_path: Path, text: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    assert expected in str(info.value)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", environ={})


def test_tokens_come_from_the_environment_only(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SELFIEBOOTH_TELEGRAM_TOKEN"):
        load_config(write(tmp_path, '[telegram]\ntoken = "123:abc"\n'), environ={})
    config = load_config(
        None, environ={"SELFIEBOOTH_TELEGRAM_TOKEN": "123:secret", "SELFIEBOOTH_DISCORD_TOKEN": "d"}
    )
    assert isinstance(config.telegram_token, Secret)
    assert config.telegram_token.get() == "123:secret"
    assert "123:secret" not in repr(config)
    assert "123:secret" not in str(config.telegram_token)


def test_data_dir_precedence(tmp_path: Path) -> None:
    path = write(tmp_path, 'data_dir = "from-file"\n')
    env = {"SELFIEBOOTH_DATA_DIR": "from-env"}
    assert load_config(path, environ={}).data_dir == Path("from-file")
    assert load_config(path, environ=env).data_dir == Path("from-env")
    assert load_config(path, environ=env, data_dir=Path("from-cli")).data_dir == Path("from-cli")


def test_the_operations_address_is_read_as_host_and_port(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    assert listen_address(load_config(None, environ={}).operations) is None
    path.write_text('[operations]\nlisten = "[::1]:9464"\n', encoding="utf-8")
    assert listen_address(load_config(path, environ={}).operations) == ("::1", 9464)
    path.write_text('[operations]\nlisten = "0.0.0.0:80"\n', encoding="utf-8")
    assert listen_address(load_config(path, environ={}).operations) == ("0.0.0.0", 80)

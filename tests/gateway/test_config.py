"""Gateway configuration: a bad file gets an error that says what to fix."""

from pathlib import Path

import pytest

from gateway.config import load_settings
from gateway.errors import ConfigError

GOOD = """
school = "S001"
school_secret = "0123456789abcdef0123"

[broker]
port = 1884

[cloud]
url = "http://127.0.0.1:9000"
token = "t"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_a_good_file_loads_with_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, GOOD))
    assert settings.school == "S001"
    assert settings.broker.port == 1884
    assert settings.broker.host == "127.0.0.1"
    assert settings.client_id == "classops-gw-S001"


def test_broken_toml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not valid TOML.*line 3"):
        load_settings(write(tmp_path, 'school = "S001"\n\nport = = 3\n'))


def test_each_bad_field_is_named(tmp_path: Path) -> None:
    text = GOOD.replace('"S001"', '"bad code!"').replace("port = 1884", "port = 99999")
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, text))
    assert "line 2: school:" in str(err.value)
    assert "line 6: broker.port:" in str(err.value)


def test_unknown_keys_are_refused_with_their_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"line 12: cloud\.scool: .*check its spelling"):
        load_settings(write(tmp_path, GOOD + '\nscool = "typo"\n'))


def test_a_missing_key_says_to_add_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"school_secret: Field required \(add it\)"):
        load_settings(write(tmp_path, 'school = "S001"\n'))


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "absent.toml")


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLASSOPS_GATEWAY_CLOUD__TOKEN", "from-env")
    assert load_settings(write(tmp_path, GOOD)).cloud.token == "from-env"


def test_the_documented_example_is_a_valid_config(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "gateway.md").read_text()
    example = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    settings = load_settings(write(tmp_path, example))
    assert settings.displays[0].port == "/dev/ttyUSB0"
    assert settings.calendar.school_days


def test_the_gateways_user_name_is_its_client_id_and_no_devices(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, GOOD.replace("port = 1884", 'port = 1884\nusername = "gw-north"')))
    assert settings.broker_user == settings.client_id == "gw-north"
    with pytest.raises(ConfigError, match=r"broker\.username: .*a device's id"):
        load_settings(write(tmp_path, GOOD.replace("port = 1884", 'port = 1884\nusername = "esp32-246f28a1b2c3"')))
    with pytest.raises(ConfigError, match=r"broker\.username: String should match pattern"):
        load_settings(write(tmp_path, GOOD.replace("port = 1884", 'port = 1884\nusername = "gw/+"')))

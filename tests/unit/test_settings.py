"""settings: every option is described once, in its field; the README's table is made from it."""

from __future__ import annotations

import dataclasses

import pytest

from chat.settings import ROOT, Settings, env_name, options, options_markdown, parse_settings


def test_the_readme_has_the_options_table_the_settings_make() -> None:
    readme = (ROOT / "README.md").read_text()
    assert options_markdown() in readme, "run `python -m chat.settings` to rewrite the table"


def test_every_setting_but_the_paths_is_an_option_with_help_and_a_parser() -> None:
    fields = {f.name for f in dataclasses.fields(Settings)}
    optioned = {f.name for _, f in options()}
    assert fields - optioned == {"templates_dir", "static_dir"}
    for option, field in options():
        assert option == "--" + field.name.replace("_", "-")
        assert field.metadata["help"] and callable(field.metadata["parse"])
        assert env_name(field) == "CHAT_" + field.name.upper()


@pytest.mark.parametrize("option, field", options(), ids=[o for o, _ in options()])
def test_each_default_parses_back_to_itself(option: str, field: dataclasses.Field[object]) -> None:
    """What --help and the README show as a default is what the server uses."""
    settings, _ = parse_settings([], {})
    assert getattr(settings, field.name) == field.default


def test_command_line_beats_environment_beats_default() -> None:
    settings, _ = parse_settings(["--history", "7"], {"CHAT_HISTORY": "5", "CHAT_PORT": "9001"})
    assert (settings.history, settings.port) == (7, 9001)


def test_secrets_stay_out_of_the_repr() -> None:
    settings = Settings(api_keys=("k-secret-1",), secret="s" * 20)
    assert "k-secret-1" not in repr(settings) and "s" * 20 not in repr(settings)

"""``kbl serve --config FILE``: extender settings from a file, checked key by key."""

from __future__ import annotations

from pathlib import Path

import pytest

from extender.settings import ExtenderSettings
from kbl.commands.serve import load_settings
from topology.errors import KblError
from topology.localities import LocalityCosts


def test_settings_file_in_camel_case_sets_costs_and_knobs(tmp_path: Path) -> None:
    path = tmp_path / "kbl.yaml"
    path.write_text("hotspotThreshold: 0.9\nbatch_limit: 8\nurlPrefix: /kbl\ncosts: {zone: 8, region: 20}\n")
    settings = load_settings(str(path))
    assert settings.hotspot_threshold == 0.9
    assert settings.batch_limit == 8
    assert settings.url_prefix == "/kbl"
    assert settings.costs == LocalityCosts(zone=8.0, region=20.0)


def test_no_file_and_an_empty_file_give_the_defaults(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_settings(None) == ExtenderSettings()
    assert load_settings(str(empty)) == ExtenderSettings()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("hotspotTreshold: 0.9\n", "unknown setting 'hotspotTreshold'"),
        ("batchLimit: many\n", "batchLimit: expected int"),
        ("bindEnabled: 1\n", "bindEnabled: expected bool"),
        ("hotspotThreshold: 3\n", "hotspot_threshold must be within 0..1"),
        ("costs: {node: 5, rack: 1}\n", "must not decrease"),
        ("costs: {moon: 1}\n", "costs:"),
        ("- a list\n", "expected a mapping"),
        ("key: [unclosed\n", "not YAML or JSON"),
    ],
)
def test_a_bad_settings_file_is_refused_naming_the_key(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "kbl.yaml"
    path.write_text(text)
    with pytest.raises(KblError, match=reason):
        load_settings(str(path))


def test_missing_settings_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KblError, match="cannot read settings"):
        load_settings(str(tmp_path / "none.yaml"))


def test_scheduler_names_come_from_flags_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from kbl import cli
    from kbl.commands.serve import settings_from_args

    args = cli.build_parser().parse_args(["serve", "--exhaustive-scheduler-name", "kbl-scheduler-exhaustive"])
    settings = settings_from_args(args)
    assert (settings.scheduler_name, settings.exhaustive_scheduler_name) == ("kbl-scheduler", "kbl-scheduler-exhaustive")
    assert settings_from_args(cli.build_parser().parse_args(["serve"])).exhaustive_scheduler_name == ""
    monkeypatch.setenv("KBL_SCHEDULER_NAME", "data")
    monkeypatch.setenv("KBL_EXHAUSTIVE_SCHEDULER_NAME", "data-all")
    settings = settings_from_args(cli.build_parser().parse_args(["serve"]))
    assert (settings.scheduler_name, settings.exhaustive_scheduler_name) == ("data", "data-all")
    with pytest.raises(KblError, match="differ"):
        settings_from_args(cli.build_parser().parse_args(["serve", "--exhaustive-scheduler-name", "data"]))

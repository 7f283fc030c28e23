"""``--history-retention``, ``--history-retention-for`` and ``--history-max-size``: parsed
into the store's policy, refused in one line naming the option."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from kubetrio.cli._app import build_app
from kubetrio.cli._errors import CommandError
from kubetrio.cli._retention import history_arguments, history_policy
from kubetrio.plugins import PluginManager
from kubetrio.store import DEFAULT_OVERRIDES


def test_the_options_make_the_policy() -> None:
    policy = history_policy("2w", ["secrets=1d", "deployments.apps=30m"], "2Gi")
    assert policy.retention == 14 * 86400
    assert policy.overrides == {**DEFAULT_OVERRIDES, "secrets": 86400.0, "deployments.apps": 1800.0}
    assert policy.max_bytes == 2 << 30
    assert dict(policy.ranges())[b"/registry/apps/deployments/"] == 1800.0
    assert not history_policy("0", [], "0").enabled
    assert history_arguments("7d", ["secrets=0"], "0") == [
        "--history-retention", "7d", "--history-max-size", "0",
        "--history-retention-for", "secrets=0",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("retention", "overrides", "size", "message"),
    [
        ("7x", [], "0", "--history-retention '7x': use a duration such as 90s, 30m, 12h, 7d or 0"),
        ("7d", ["secrets"], "0", "--history-retention-for 'secrets': use RESOURCE=DURATION"),
        ("7d", ["Se/crets=1d"], "0", "'Se/crets' is not a resource name"),
        ("7d", ["secrets=soon"], "0", "--history-retention-for 'soon': use a duration"),
        ("7d", [], "lots", "--history-max-size 'lots': use a size such as 500Mi, 2Gi or 0"),
    ],
)
def test_bad_values_are_refused_naming_the_option(
    retention: str, overrides: list[str], size: str, message: str
) -> None:
    with pytest.raises(CommandError) as refused:
        history_policy(retention, overrides, size)
    assert message in str(refused.value)


def test_server_and_up_take_the_options() -> None:
    app = build_app(PluginManager())
    for command in ("server", "up"):
        result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert "--history-retention-for" in result.output and "--history-max-size" in result.output

"""batch/v1 validation (``kinds.validate``): Jobs and CronJobs, defaulted as the API
server defaults them before validating."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import pytest

from kubetrio.api.cron import CronSchedule
from kubetrio.api.validation import kinds
from kubetrio.apiserver._defaults import apply_defaults, default_on_create

Obj = dict[str, Any]


def _pod_template() -> Obj:
    return {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}


def job() -> Obj:
    obj: Obj = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "pi", "namespace": "default", "uid": "1234"},
        "spec": {"template": _pod_template()},
    }
    apply_defaults("batch", "jobs", obj)
    default_on_create("batch", "jobs", obj)
    return obj


def cron_job() -> Obj:
    obj: Obj = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "tick", "namespace": "default"},
        "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": _pod_template()}}},
    }
    apply_defaults("batch", "cronjobs", obj)
    return obj


def _errors(resource: str, obj: Obj, old: Obj | None = None) -> list[tuple[str, str, str]]:
    return [(e.field, str(e.type), e.message) for e in kinds.validate("batch", resource, obj, old)]


def test_valid_objects_pass() -> None:
    assert _errors("jobs", job()) == []
    assert _errors("cronjobs", cron_job()) == []
    for schedule in ("@hourly", "@daily", "@yearly", "0 9 * * mon-fri", "*/15 0-6 1,15 jan-jun ?"):
        cj = cron_job()
        cj["spec"]["schedule"] = schedule
        assert _errors("cronjobs", cj) == [], schedule


def _spec(**values: Any) -> Callable[[Obj], None]:
    return lambda obj: obj["spec"].update(values)


def _pod(**values: Any) -> Callable[[Obj], None]:
    return lambda obj: obj["spec"]["template"]["spec"].update(values)


JOB_CASES = [
    (
        _spec(parallelism=-1),
        "spec.parallelism",
        "FieldValueInvalid",
        "must be greater than or equal to 0",
    ),
    (
        _spec(completions=-1),
        "spec.completions",
        "FieldValueInvalid",
        "must be greater than or equal to 0",
    ),
    (
        _spec(backoffLimit=-1),
        "spec.backoffLimit",
        "FieldValueInvalid",
        "must be greater than or equal to 0",
    ),
    (
        _spec(activeDeadlineSeconds=-5),
        "spec.activeDeadlineSeconds",
        "FieldValueInvalid",
        "must be greater than or equal to 0",
    ),
    (
        _spec(ttlSecondsAfterFinished=-1),
        "spec.ttlSecondsAfterFinished",
        "FieldValueInvalid",
        "must be greater than or equal to 0",
    ),
    (
        _spec(completionMode="Sometimes"),
        "spec.completionMode",
        "FieldValueNotSupported",
        'supported values: "NonIndexed", "Indexed"',
    ),
    (
        _spec(completionMode="Indexed", completions=None),
        "spec.completions",
        "FieldValueRequired",
        "when completion mode is Indexed",
    ),
    (
        _spec(backoffLimitPerIndex=1),
        "spec.backoffLimitPerIndex",
        "FieldValueInvalid",
        "requires indexed completion mode",
    ),
    (
        _spec(completionMode="Indexed", maxFailedIndexes=1),
        "spec.backoffLimitPerIndex",
        "FieldValueRequired",
        "when maxFailedIndexes is specified",
    ),
    (
        _spec(podReplacementPolicy="Sometimes"),
        "spec.podReplacementPolicy",
        "FieldValueNotSupported",
        '"Failed", "TerminatingOrFailed"',
    ),
    (
        _pod(restartPolicy="Always"),
        "spec.template.spec.restartPolicy",
        "FieldValueRequired",
        'valid values: "OnFailure", "Never"',
    ),
    (
        _pod(restartPolicy="Sometimes"),
        "spec.template.spec.restartPolicy",
        "FieldValueNotSupported",
        '"OnFailure", "Never"',
    ),
    (
        lambda o: (_spec(podFailurePolicy={"rules": []})(o), _pod(restartPolicy="OnFailure")(o)),
        "spec.template.spec.restartPolicy",
        "FieldValueInvalid",
        'only "Never" is supported when podFailurePolicy is specified',
    ),
    (
        lambda o: o["spec"]["template"]["metadata"]["labels"].update({"job-name": "other"}),
        "spec.template.metadata.labels[job-name]",
        "FieldValueInvalid",
        "must be 'pi'",
    ),
    (
        _spec(selector={"matchLabels": {"app": "x"}}),
        "spec.selector",
        "FieldValueInvalid",
        "`selector` not auto-generated",
    ),
    (
        lambda o: _spec(manualSelector=True, selector={"matchLabels": {"app": "x"}})(o),
        "spec.template.metadata.labels",
        "FieldValueInvalid",
        "`selector` does not match template `labels`",
    ),
    (
        lambda o: (
            o["metadata"].update(name="j" * 60),
            _spec(completionMode="Indexed", completions=1000)(o),
        ),
        "metadata.name",
        "FieldValueInvalid",
        "will not able to create pod with invalid DNS label: " + "j" * 60 + "-999",
    ),
    (
        _spec(manualSelector=True, selector=None),
        "spec.selector",
        "FieldValueRequired",
        "Required value",
    ),
]


@pytest.mark.parametrize(("change", "field", "reason", "fragment"), JOB_CASES)
def test_job_rule(change: Callable[[Obj], Any], field: str, reason: str, fragment: str) -> None:
    obj = job()
    change(obj)
    found = [e for e in _errors("jobs", obj) if e[0] == field]
    assert any(r == reason and fragment in m for _, r, m in found), _errors("jobs", obj)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("completions", 3),
        ("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": "other"}}),
        ("completionMode", "Indexed"),
    ],
)
def test_job_fields_fixed_on_update(key: str, value: Any) -> None:
    old = job()
    new = copy.deepcopy(old)
    new["spec"][key] = value
    assert [
        (f, "field is immutable" in m)
        for f, _, m in _errors("jobs", new, old)
        if f == f"spec.{key}"
    ] == [(f"spec.{key}", True)]


def test_job_template_fixed_and_indexed_completions_elastic() -> None:
    old = job()
    new = copy.deepcopy(old)
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "alpine"
    assert "spec.template" in [e[0] for e in _errors("jobs", new, old)]
    old["spec"].update(completionMode="Indexed", completions=2, parallelism=2)
    grown = copy.deepcopy(old)
    grown["spec"].update(completions=4, parallelism=4)
    assert _errors("jobs", grown, old) == []
    grown["spec"]["parallelism"] = 3
    assert "can only be modified in tandem with parallelism" in _errors("jobs", grown, old)[0][2]


def test_job_suspend_and_parallelism_may_change() -> None:
    old = job()
    new = copy.deepcopy(old)
    new["spec"].update(suspend=True, parallelism=5)
    assert _errors("jobs", new, old) == []


CRON_CASES = [
    (
        _spec(schedule="bogus"),
        "spec.schedule",
        "FieldValueInvalid",
        'Invalid value: "bogus": expected exactly 5 fields, found 1: [bogus]',
    ),
    (
        _spec(schedule="61 * * * *"),
        "spec.schedule",
        "FieldValueInvalid",
        "end of range (61) above maximum (59): 61",
    ),
    (
        _spec(schedule="@fortnightly"),
        "spec.schedule",
        "FieldValueInvalid",
        "unrecognized descriptor",
    ),
    (_spec(schedule=""), "spec.schedule", "FieldValueRequired", "Required value"),
    (
        _spec(schedule="TZ=UTC 0 * * * *"),
        "spec.schedule",
        "FieldValueInvalid",
        "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
    ),
    (
        _spec(timeZone="Mars/Olympus"),
        "spec.timeZone",
        "FieldValueInvalid",
        "unknown time zone Mars/Olympus",
    ),
    (
        _spec(timeZone=""),
        "spec.timeZone",
        "FieldValueInvalid",
        "timeZone must be nil or non-empty string",
    ),
    (
        _spec(timeZone="Local"),
        "spec.timeZone",
        "FieldValueInvalid",
        "must be an explicit time zone",
    ),
    (
        _spec(concurrencyPolicy="Sometimes"),
        "spec.concurrencyPolicy",
        "FieldValueNotSupported",
        '"Allow", "Forbid", "Replace"',
    ),
    (
        _spec(startingDeadlineSeconds=-1),
        "spec.startingDeadlineSeconds",
        "FieldValueInvalid",
        "must be greater than or equal to 0",
    ),
    (
        _spec(successfulJobsHistoryLimit=-1),
        "spec.successfulJobsHistoryLimit",
        "FieldValueInvalid",
        "must be greater than or equal to 0",
    ),
    (
        _spec(failedJobsHistoryLimit=-1),
        "spec.failedJobsHistoryLimit",
        "FieldValueInvalid",
        "must be greater than or equal to 0",
    ),
    (
        lambda o: o["spec"]["jobTemplate"]["spec"].update(selector={"matchLabels": {"a": "b"}}),
        "spec.jobTemplate.spec.selector",
        "FieldValueInvalid",
        "`selector` will be auto-generated",
    ),
    (
        lambda o: o["spec"]["jobTemplate"]["spec"].update(manualSelector=True),
        "spec.jobTemplate.spec.manualSelector",
        "FieldValueNotSupported",
        '"nil", "false"',
    ),
    (
        lambda o: o["spec"]["jobTemplate"]["spec"].update(backoffLimit=-1),
        "spec.jobTemplate.spec.backoffLimit",
        "FieldValueInvalid",
        "must be greater than or equal to 0",
    ),
    (
        lambda o: o["spec"]["jobTemplate"]["spec"]["template"]["spec"].update(
            restartPolicy="Always"
        ),
        "spec.jobTemplate.spec.template.spec.restartPolicy",
        "FieldValueRequired",
        'valid values: "OnFailure", "Never"',
    ),
    (
        lambda o: o["metadata"].update(name="c" * 53),
        "metadata.name",
        "FieldValueInvalid",
        "must be no more than 52 characters",
    ),
]


@pytest.mark.parametrize(("change", "field", "reason", "fragment"), CRON_CASES)
def test_cron_job_rule(
    change: Callable[[Obj], Any], field: str, reason: str, fragment: str
) -> None:
    obj = cron_job()
    change(obj)
    found = [e for e in _errors("cronjobs", obj) if e[0] == field]
    assert any(r == reason and fragment in m for _, r, m in found), _errors("cronjobs", obj)


def test_cron_job_time_zone_and_old_tz_schedules() -> None:
    obj = cron_job()
    obj["spec"]["timeZone"] = "Europe/Paris"
    assert _errors("cronjobs", obj) == []
    old = cron_job()
    old["spec"]["schedule"] = "TZ=UTC 0 * * * *"
    kept = copy.deepcopy(old)
    kept["spec"]["suspend"] = True
    assert _errors("cronjobs", kept, old) == []  # an old TZ= schedule may stay


def test_cron_parser_messages_follow_robfig() -> None:
    for text, message in [
        ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
        ("*/0 * * * *", "step of range should be a positive number: */0"),
        ("5-2 * * * *", "beginning of range (5) beyond end of range (2): 5-2"),
        ("x * * * *", 'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax'),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            CronSchedule(text)

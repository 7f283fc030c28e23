"""Validation of the batch kinds (see :mod:`kubetrio.api.validation.kinds`).

Upstream's ``pkg/apis/batch/validation``: a Job's counts are non-negative, its pods
restart ``OnFailure`` or ``Never``, its selector (generated from its uid unless
``manualSelector``) matches its template, and selector, template, completions and
completionMode never change; a CronJob's schedule parses as standard cron (the parser
the CronJob controller runs), its time zone exists, its policy is a known one, and its
job template leaves the selector to be generated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..cron import CronSchedule
from . import FieldError
from . import core as core_validation
from ._common import (
    as_selector,
    one_of,
    validate_immutable,
    validate_label_selector,
    validate_nonnegative,
)
from .kinds import KindValidator

__all__ = ["VALIDATORS"]

Obj = Mapping[str, Any]

_MAX_PARALLELISM_INDEXED = 100_000
_MAX_FAILED_INDEXES = 100_000
# The job controller names its Jobs <cronjob>-<11 characters>, and a Job name is a label.
_CRONJOB_NAME_MAX = 63 - 11
_TZ_PART = re.compile(r"^[A-Za-z.\-_0-9+]{1,14}$")
_GENERATED_LABELS = (
    "controller-uid",
    "job-name",
    "batch.kubernetes.io/controller-uid",
    "batch.kubernetes.io/job-name",
)


def _mapping(value: Any) -> Obj:
    return value if isinstance(value, Mapping) else {}


def _job_spec(spec: Obj, path: str) -> list[FieldError]:
    """``validateJobSpec``: what a Job and a CronJob's job template share."""
    errs: list[FieldError] = []
    for key in (
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ):
        errs += validate_nonnegative(spec.get(key), f"{path}.{key}")
    if spec.get("maxFailedIndexes") is not None and spec.get("backoffLimitPerIndex") is None:
        errs.append(
            FieldError.required(
                f"{path}.backoffLimitPerIndex", "when maxFailedIndexes is specified"
            )
        )
    mode = spec.get("completionMode")
    if mode is not None:
        errs += one_of(mode, f"{path}.completionMode", ["NonIndexed", "Indexed"], required=False)
    if mode == "Indexed":
        completions, parallelism = spec.get("completions"), spec.get("parallelism")
        if completions is None:
            errs.append(
                FieldError.required(f"{path}.completions", "when completion mode is Indexed")
            )
        if isinstance(parallelism, int) and parallelism > _MAX_PARALLELISM_INDEXED:
            errs.append(
                FieldError.invalid(
                    f"{path}.parallelism",
                    parallelism,
                    f"must be less than or equal to {_MAX_PARALLELISM_INDEXED} when completion "
                    "mode is Indexed",
                )
            )
        failed = spec.get("maxFailedIndexes")
        if isinstance(failed, int) and isinstance(completions, int) and failed > completions:
            errs.append(
                FieldError.invalid(
                    f"{path}.maxFailedIndexes", failed, "must be less than or equal to completions"
                )
            )
    else:
        for key in ("backoffLimitPerIndex", "maxFailedIndexes"):
            if spec.get(key) is not None:
                errs.append(
                    FieldError.invalid(
                        f"{path}.{key}", spec[key], "requires indexed completion mode"
                    )
                )
    replacement = spec.get("podReplacementPolicy")
    if replacement is not None:
        errs += one_of(
            replacement,
            f"{path}.podReplacementPolicy",
            ["Failed", "TerminatingOrFailed"],
            required=False,
        )
    template = _mapping(spec.get("template"))
    errs += core_validation.validate_pod_template_spec(template, f"{path}.template")
    restart = _mapping(template.get("spec")).get("restartPolicy")
    restart_path = f"{path}.template.spec.restartPolicy"
    if restart in (None, "", "Always"):
        errs.append(FieldError.required(restart_path, 'valid values: "OnFailure", "Never"'))
    elif restart not in ("OnFailure", "Never"):
        errs.append(FieldError.not_supported(restart_path, restart, ["OnFailure", "Never"]))
    elif spec.get("podFailurePolicy") is not None and restart != "Never":
        errs.append(
            FieldError.invalid(
                restart_path,
                restart,
                'only "Never" is supported when podFailurePolicy is specified',
            )
        )
    return errs


def _generated_selector(job: Obj) -> list[FieldError]:
    """``validateGeneratedSelector``: unless ``manualSelector``, the template carries the
    labels the selector was generated from (the Job's uid and name)."""
    spec = _mapping(job.get("spec"))
    meta = _mapping(job.get("metadata"))
    if spec.get("manualSelector") or spec.get("selector") is None:
        return []
    errs: list[FieldError] = []
    uid, name = meta.get("uid", ""), meta.get("name", "")
    if not uid:
        errs.append(FieldError.required("metadata.uid"))
    labels = _mapping(_mapping(_mapping(spec.get("template")).get("metadata")).get("labels"))
    expected = dict(zip(_GENERATED_LABELS, (uid, name, uid, name), strict=True))
    for key, value in expected.items():
        field = f"spec.template.metadata.labels[{key}]"
        if key not in labels:
            errs.append(FieldError.required(field, str(value)))
        elif labels[key] != value:
            errs.append(FieldError.invalid(field, dict(labels), f"must be '{value}'"))
    selector = as_selector(spec.get("selector"))
    if selector is not None and not selector.matches(expected):
        errs.append(
            FieldError.invalid(
                "spec.selector", spec.get("selector"), "`selector` not auto-generated"
            )
        )
    return errs


def validate_job(obj: Obj, old: Obj | None) -> list[FieldError]:
    """``ValidateJob`` / ``ValidateJobUpdate``."""
    spec = _mapping(obj.get("spec"))
    meta = _mapping(obj.get("metadata"))
    errs: list[FieldError] = []
    if old is None:
        errs += _generated_selector(obj)
    errs += _job_spec(spec, "spec")
    selector = spec.get("selector")
    if selector is None:
        # a Job created by generateName has no name, hence no generated selector, yet
        if spec.get("manualSelector") or meta.get("name"):
            errs.append(FieldError.required("spec.selector"))
    else:
        errs += validate_label_selector(selector, "spec.selector")
        parsed = as_selector(selector)
        labels = _mapping(_mapping(_mapping(spec.get("template")).get("metadata")).get("labels"))
        if parsed is not None and not parsed.matches(labels):
            errs.append(
                FieldError.invalid(
                    "spec.template.metadata.labels",
                    dict(labels),
                    "`selector` does not match template `labels`",
                )
            )
    mode, completions = spec.get("completionMode"), spec.get("completions")
    if (
        old is None
        and mode == "Indexed"
        and isinstance(completions, int)
        and completions > 0
        and meta.get("name")
    ):
        hostname = f"{meta['name']}-{completions - 1}"
        if len(hostname) > 63:
            errs.append(
                FieldError.invalid(
                    "metadata.name",
                    meta["name"],
                    f"will not able to create pod with invalid DNS label: {hostname}",
                )
            )
    if old is not None:
        old_spec = _mapping(old.get("spec"))
        errs += _completions_update(spec, old_spec)
        for key in (
            "selector",
            "template",
            "completionMode",
            "podFailurePolicy",
            "backoffLimitPerIndex",
            "managedBy",
            "successPolicy",
        ):
            errs += validate_immutable(spec.get(key), old_spec.get(key), f"spec.{key}")
    return errs


def _completions_update(spec: Obj, old_spec: Obj) -> list[FieldError]:
    """``validateCompletions``: fixed, except that an Indexed Job may scale completions
    together with parallelism (elastic Indexed Jobs)."""
    completions = spec.get("completions")
    if completions == old_spec.get("completions"):
        return []
    if spec.get("completionMode") != "Indexed":
        return validate_immutable(completions, old_spec.get("completions"), "spec.completions")
    if completions is not None and completions != spec.get("parallelism"):
        return [
            FieldError.invalid(
                "spec.completions", completions, "can only be modified in tandem with parallelism"
            )
        ]
    return []


# ---- CronJob ------------------------------------------------------------------------


def _schedule(schedule: Any, old_schedule: Any, time_zone: Any) -> list[FieldError]:
    path = "spec.schedule"
    if not schedule:
        return [FieldError.required(path)]
    if not isinstance(schedule, str):
        return [FieldError.invalid(path, schedule, "must be a string")]
    errs: list[FieldError] = []
    try:
        CronSchedule(schedule)
    except ValueError as exc:
        errs.append(FieldError.invalid(path, schedule, str(exc)))
    # A TZ in the schedule was allowed once: an old CronJob keeps it, a new one uses
    # timeZone.
    allow_tz = isinstance(old_schedule, str) and "TZ" in old_schedule
    if allow_tz and "TZ" in schedule and time_zone is not None:
        errs.append(
            FieldError.invalid(
                path, schedule, "cannot use both timeZone field and TZ or CRON_TZ in schedule"
            )
        )
    elif not allow_tz and "TZ" in schedule:
        errs.append(
            FieldError.invalid(
                path, schedule, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
            )
        )
    return errs


def _time_zone(zone: Any) -> list[FieldError]:
    path = "spec.timeZone"
    if zone is None:
        return []
    if zone == "":
        return [FieldError.invalid(path, zone, "timeZone must be nil or non-empty string")]
    for part in str(zone).split("/"):
        if part in (".", "..") or part.startswith("-") or not _TZ_PART.match(part):
            return [FieldError.invalid(path, zone, f"unknown time zone {zone}")]
    if str(zone).lower() == "local":
        return [
            FieldError.invalid(
                path,
                zone,
                "timeZone must be an explicit time zone as defined in "
                "https://www.iana.org/time-zones",
            )
        ]
    try:
        CronSchedule("* * * * *", str(zone))
    except ValueError:
        return [FieldError.invalid(path, zone, f"unknown time zone {zone}")]
    return []


def validate_cron_job(obj: Obj, old: Obj | None) -> list[FieldError]:
    """``ValidateCronJobCreate`` / ``ValidateCronJobUpdate``."""
    spec = _mapping(obj.get("spec"))
    old_spec = _mapping(old.get("spec")) if old is not None else None
    errs: list[FieldError] = []
    name = _mapping(obj.get("metadata")).get("name")
    if old is None and isinstance(name, str) and len(name) > _CRONJOB_NAME_MAX:
        errs.append(
            FieldError.invalid(
                "metadata.name", name, f"must be no more than {_CRONJOB_NAME_MAX} characters"
            )
        )
    zone = spec.get("timeZone")
    errs += _schedule(spec.get("schedule"), old_spec.get("schedule") if old_spec else None, zone)
    errs += validate_nonnegative(
        spec.get("startingDeadlineSeconds"), "spec.startingDeadlineSeconds"
    )
    if old_spec is None or old_spec.get("timeZone") != zone:
        errs += _time_zone(zone)
    errs += one_of(
        spec.get("concurrencyPolicy"),
        "spec.concurrencyPolicy",
        ["Allow", "Forbid", "Replace"],
        required=True,
    )
    job_template = _mapping(spec.get("jobTemplate"))
    job_spec = _mapping(job_template.get("spec"))
    errs += _job_spec(job_spec, "spec.jobTemplate.spec")
    if job_spec.get("selector") is not None:
        errs.append(
            FieldError.invalid(
                "spec.jobTemplate.spec.selector",
                job_spec["selector"],
                "`selector` will be auto-generated",
            )
        )
    if job_spec.get("manualSelector"):
        errs.append(
            FieldError.not_supported("spec.jobTemplate.spec.manualSelector", True, ["nil", "false"])
        )
    for key in ("successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        errs += validate_nonnegative(spec.get(key), f"spec.{key}")
    return errs


VALIDATORS: dict[tuple[str, str], KindValidator] = {
    ("batch", "jobs"): validate_job,
    ("batch", "cronjobs"): validate_cron_job,
}

"""The create form (`/exports/new`): generated from the exporters' params JSON Schema
(what `GET /v1/exporters` answers), submitted to the same code as `POST /v1/exports`
(validation, limits, and an Idempotency-Key made when the form was shown, so a double
click or a resubmitted form queues one export), with the `422` problem's field errors
shown next to the fields."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from exportd.api.auth import CurrentRuntime
from exportd.api.problems import Problem, from_error
from exportd.api.routes_exports import create_export
from exportd.api.routes_meta import list_exporters
from exportd.api.schemas import ExporterOut
from exportd.api.web.forms import (
    FormErrors,
    FormField,
    build_request,
    check_params,
    fields_for,
    place,
    read_params,
)
from exportd.api.web.templating import render
from exportd.api.web.users import FormUser, PageUser, WebUser, redirect
from exportd.errors import ExportdError
from exportd.formats import COMPRESSIONS
from exportd.runtime import Runtime

router = APIRouter(include_in_schema=False)

PROBLEM_FIELDS = {
    "invalid_format": "field-format",
    "invalid_compression": "field-compression",
    "unknown_exporter": "field-exporter",
}


@dataclass
class CreateForm:
    exporters: list[ExporterOut]
    chosen: ExporterOut | None
    fields: list[FormField]
    top: dict[str, str] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)
    idempotency_key: str = field(default_factory=lambda: secrets.token_urlsafe(18))

    def label_of(self, input_id: str) -> str:
        for f in self.fields:
            if f.id == input_id:
                return f.label
        return TOP_LABELS.get(input_id, input_id)

    def problems(self) -> list[tuple[str, str]]:
        """Every error with the id of its input, in the form's order (the summary)."""
        listed = [("", message) for message in self.general]
        ids = ["field-exporter", *(f.id for f in self.fields), *TOP_IDS]
        for key in ids:
            listed += [(key, message) for message in self.errors.get(key, ())]
        return listed


TOP_LABELS = {
    "field-exporter": "Exporter",
    "field-format": "Format",
    "field-compression": "Compression",
    "field-filename": "File name",
    "field-max_attempts": "Attempts",
}
TOP_IDS = ("field-format", "field-compression", "field-filename", "field-max_attempts")


def new_form(runtime: Runtime, user: WebUser, name: str | None) -> CreateForm:
    exporters = list_exporters(user.principal, runtime)
    by_name = {e.name: e for e in exporters}
    default = "synthetic" if "synthetic" in by_name else (exporters[0].name if exporters else "")
    chosen = by_name.get(name or default)
    form = CreateForm(exporters, chosen, fields_for(chosen.params_schema) if chosen else [])
    if chosen is None and name:
        form.errors["field-exporter"] = [f"There is no exporter named “{name}”."]
    return form


def show(request: Request, user: WebUser, form: CreateForm, status: int = 200) -> Response:
    return render(
        request,
        "new.html",
        status=status,
        user=user,
        form=form,
        compressions=list(COMPRESSIONS),
    )


@router.get("/exports/new")
async def new_export(
    request: Request, user: PageUser, runtime: CurrentRuntime, exporter: str | None = None
) -> Response:
    form = new_form(runtime, user, exporter)
    return show(request, user, form, 200 if form.chosen or not exporter else 404)


@router.post("/exports/new")
async def create_from_form(request: Request, user: FormUser, runtime: CurrentRuntime) -> Response:
    """Queue the export and go to the list; or show the form again with its errors."""
    submitted = await request.form()
    values = {key: [str(v) for v in submitted.getlist(key)] for key in submitted}
    name = (values.get("exporter") or [""])[-1]
    form = new_form(runtime, user, name)
    form.top = {key: (values.get(key) or [""])[-1] for key in TOP_IDS}
    key = (values.get("idempotency_key") or [""])[-1] or form.idempotency_key
    if form.chosen is None:
        return show(request, user, form, 422)
    try:
        params, unreadable = read_params(form.fields, values)
        if unreadable:
            spec = runtime.registry.get(name)
            others = {k: v for k, v in check_params(spec.params, params).items() if k}
            raise FormErrors({**others, **unreadable}, [])
        body = build_request(name, params, values)
        await run_in_threadpool(submit, runtime, user, body, key)
    except FormErrors as exc:  # shown again with a fresh key: nothing was queued
        form.errors.update(exc.fields)
        form.general += exc.general + form.errors.pop("", [])
        return show(request, user, form, 422)
    return redirect(request, "/", "queued")


def submit(runtime: Runtime, user: WebUser, body: Any, key: str) -> None:
    """`POST /v1/exports` as the API runs it; its problems become `FormErrors`."""
    try:
        try:
            create_export(body, user.principal, runtime, Response(), idempotency_key=key)
        except ExportdError as exc:
            raise from_error(exc) from exc
    except Problem as problem:
        raise _form_errors(problem) from problem


def _form_errors(problem: Problem) -> FormErrors:
    errors = problem.extra.get("errors")
    if isinstance(errors, list) and errors:
        placed = place(errors)
        return FormErrors(placed, placed.pop("", []))
    if problem.code in PROBLEM_FIELDS:
        return FormErrors({PROBLEM_FIELDS[problem.code]: [problem.detail]}, [])
    if problem.code == "idempotency_key_reused":
        detail = "This form was already sent with other values: check them and send it again."
        return FormErrors({}, [detail])
    return FormErrors({}, [problem.detail])

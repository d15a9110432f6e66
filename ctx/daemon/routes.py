"""The daemon's routes, generated from the operations table: one route per operation, nothing written by hand.

A route validates its input (path and query parameters of a GET, the JSON body of a POST) with the
operation's input model, runs the handler (or the daemon's own, for the few operations a daemon does
differently) and writes the plain data the handler returns as JSON. The output model documents the
response in OpenAPI; the schema test checks every body against it.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel

from ctx.api.operations import OPERATIONS, Operation
from ctx.observe.metrics import CONTENT_TYPE

Run = Callable[[Operation[Any, Any], Any], Any]


def _json(data: Any, status: int) -> Response:
    return Response(json.dumps(data, ensure_ascii=False, default=str, separators=(",", ":")), status,
                    media_type="application/json")


def _parameters(op: Operation[Any, Any]) -> list[inspect.Parameter]:
    """The endpoint's signature, as FastAPI reads it: the body model, or one parameter per input field."""
    model: type[BaseModel] | None = op.input
    if model is None:
        return []
    if op.method == "POST":
        return [inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=model)]
    params = []
    for name, field in model.model_fields.items():
        where = Path if name in op.path_params else Query
        # The field's own constraints (length, pattern, bounds) travel with it, so the schema says them too.
        annotation = Annotated[(field.annotation, where(description=field.description), *field.metadata)]  # type: ignore[name-defined]
        default = inspect.Parameter.empty if field.is_required() else field.default
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation))
    return params


def _endpoint(op: Operation[Any, Any], run: Run) -> Callable[..., Response]:
    model = op.input

    def endpoint(**values: Any) -> Response:
        if model is None:
            body = None
        elif op.method == "POST":
            body = values["body"]
        else:  # already checked field by field by FastAPI: build the model without a second validation
            body = model.model_construct(**values)
        result = run(op, body)
        # A Response is sent as it is (FastAPI applies no status_code of the route to it): it carries its own.
        return Response(result, op.status, media_type=CONTENT_TYPE) if op.text else _json(result, op.status)

    endpoint.__signature__ = inspect.Signature(_parameters(op))  # type: ignore[attr-defined]
    endpoint.__name__ = op.name
    endpoint.__doc__ = op.summary
    return endpoint


def add_routes(app: FastAPI, run: Run) -> None:
    """One route per operation, in the table's order (a fixed path before a parameter that would match it)."""
    for op in OPERATIONS:
        if op.text:
            extra: dict[str, Any] = {"response_class": Response, "responses": {200: {
                "content": {CONTENT_TYPE.split(";")[0]: {}}, "description": "Prometheus text format"}}}
        else:
            extra = {"response_model": op.output}
        app.add_api_route(op.path, _endpoint(op, run), methods=[op.method], status_code=op.status, tags=[op.tag],
                          name=op.name, summary=None, description=op.summary, **extra)

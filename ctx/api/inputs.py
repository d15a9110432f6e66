"""The input model of every operation: the daemon validates them (and documents them in OpenAPI), the CLI
builds them from its options, so a bad value gives the same one-line error either way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from ctx.errors import UserError
from ctx.ingest.values import value_problem

API_VERSION = "1"
VERSION_HEADER = "X-Ctx-Api-Version"

# The core's own rules, stated in the schema (the core checks them, with its own messages): a query with
# something in it, a budget of 0 or more.
Text = Field(max_length=20_000, description="the request; an empty or blank one is refused by the core (400)",
             json_schema_extra={"pattern": r"\S"})
Name = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def _numeric(annotation: Any) -> bool:
    """True for int and float, alone or in a union (``int | None``); bool is an int to Python, not to JSON."""
    if annotation in (int, float):
        return True
    return any(_numeric(arg) for arg in get_args(annotation))


class Request(BaseModel):
    """Unknown fields are refused, as in ctx.toml: a misspelt option must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # JSON's true is not the number 1: ``"budget": true`` is refused, as the schema says.
        if isinstance(value, bool) and info.field_name and _numeric(cls.model_fields[info.field_name].annotation):
            raise ValueError("expected a number, not a boolean")
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: Any, info: ValidationInfo) -> Any:
        # The daemon reads bodies with json.loads, which takes "\udcff" (a lone surrogate), "\u0000" and 1e400
        # (infinity): no store, log or JSON reply can hold them, so the request is refused here, every field at
        # any depth (the free-form events too), not deep in a handler as a 500. The schema cannot say it (a
        # JSON string may hold a NUL), so it is the core's rule: a UserError (400, exit 2), not a 422. Checked
        # before the field's type, so a value out of range is refused alike whatever field it is sent in.
        if (problem := value_problem(value)) is not None:
            raise UserError(f"invalid request: {info.field_name}: {problem}")
        return value


# A switch is true or false, as the schema says: ``"rerun": "yes"`` or ``"repair": 0`` is refused, not guessed at.
Switch = Field(default=False, strict=True)


class FiltersIn(Request):
    sources: list[str] | None = Field(default=None, max_length=100, description="only these sources")
    tenant: str | None = Field(default=None, min_length=1, max_length=200,
                               description="this tenant's data plus shared data; without it, shared data only")
    path: str | None = Field(default=None, min_length=1, max_length=500, description="a glob on document keys")


class AssembleIn(FiltersIn):
    query: str = Text
    budget: int | None = Field(default=None, le=10_000_000, json_schema_extra={"minimum": 0},
                               description="tokens, 0 or more (default from ctx.toml); a negative one is refused by "
                                           "the core (400)")
    model: str | None = Field(default=None, min_length=1, max_length=200)
    format: str | None = Field(default=None, min_length=1, max_length=100)
    top_k: int | None = Field(default=None, ge=1, le=1000)
    recipe: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$",
                               description="a [recipes.NAME] of ctx.toml (default: [assembly] recipe)")
    user: str | None = Field(default=None, min_length=1, max_length=500, description="for session and record "
                             "providers")
    session: str | None = Field(default=None, min_length=1, max_length=500)
    params: dict[str, str] = Field(default_factory=dict, max_length=50,
                                   description="named values for record queries and http URLs")
    deadline_ms: float | None = Field(default=None, gt=0, le=600_000,
                                      description="for every provider together (default: the recipe's)")
    version: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$",
                                description="a stored version of the recipe: id, id prefix or label (default: "
                                            "the experiment's variant, else the settings in force)")
    as_of: str | None = Field(default=None, min_length=1, max_length=64,
                              description="assemble against the data as it was then: an ISO-8601 time or an age "
                                          "(2h, 3d); a future or unreadable time is refused (400)")


class SearchIn(FiltersIn):
    query: str = Text
    limit: int = Field(default=10, ge=1, le=1000)


class IngestIn(Request):
    sources: list[str] | None = Field(default=None, max_length=100, description="default: every source")
    trigger: Literal["api", "cli"] = Field(default="api", description="who asked, as `ctx jobs` shows it")


class EventsIn(Request):
    source: str = Name
    events: list[dict[str, Any]] = Field(min_length=1, max_length=10_000)


class ReplayIn(Request):
    trace_id: str = Field(max_length=200, description="a trace id, or a unique prefix of 8+ characters")
    rerun: bool = Switch
    version: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$",
                                description="with rerun: re-assemble with this version (id, id prefix or label)")


class DoctorIn(Request):
    repair: bool = Switch


# A version is named by its id, an id prefix or a label; a label starts with a letter (64 characters at most).
VersionRef = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$",
                   description="a version id, an id prefix (4+ hex digits) or a label")
LabelName = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")
RecipeName = Field(default=None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$",
                   description="a [recipes.NAME] of ctx.toml")


class VersionRefIn(Request):
    """A version reference as the CLI and the routes check it, before anything is looked up."""

    ref: str = VersionRef
    recipe: str | None = RecipeName


class VersionLabelIn(Request):
    ref: str = VersionRef
    label: str = LabelName
    recipe: str | None = RecipeName


class VersionRollbackIn(Request):
    label: str = LabelName
    recipe: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$",
                               description="default: [assembly] recipe")


DocName = Annotated[str, Field(min_length=1, max_length=1000)]
Grade = Annotated[float, Field(allow_inf_nan=False)]


class EvalQueryIn(Request):
    id: str = Field(min_length=1, max_length=500)
    query: str = Text
    relevant: dict[DocName, Grade] = Field(min_length=1, max_length=10_000,
                                           description="document id, key or source:key → grade (above 0: "
                                                       "relevant); none above 0 is refused by the core (400)")


class EvalIn(Request):
    """Labeled queries sent inline (the daemon reads no client file): one version, or two (``compare``)."""

    queries: list[EvalQueryIn] = Field(min_length=1, max_length=10_000)
    name: str = Field(default="", max_length=1000, description="where the queries came from, for the record")
    version: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$",
                                description="default: the version in force")
    compare: list[Annotated[str, VersionRef]] | None = Field(default=None, min_length=2, max_length=2,
                                                             description="two versions, side by side")
    k: int = Field(default=10, ge=1, le=1000, description="the cutoff of recall@k")
    recipe: str | None = RecipeName


# --- the inputs of reads: query string and path parameters through the daemon -------------------------------

REF_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"


class JobsIn(Request):
    limit: int = Field(default=20, ge=1, le=1000)


class JobIn(Request):
    job_id: str


class TracesIn(Request):
    limit: int = Field(default=20, ge=1, le=10000)


class TraceIn(Request):
    trace_id: str


class QuarantineIn(Request):
    source: str | None = Field(default=None, min_length=1, max_length=200)
    limit: int = Field(default=50, ge=1, le=100000)


class CostIn(Request):
    since: str = Field(default="7d", min_length=1, max_length=20, description="a duration: 1h, 24h, 7d, 30d")


class AuditIn(Request):
    window: str = Field(default="7d", min_length=1, max_length=20, description="a duration: 1h, 24h, 7d, 30d")
    sample: int = Field(default=20, ge=0, le=1000, description="recent traces replayed by the probe")


class AbReportIn(Request):
    name: str
    since: str = Field(default="30d", min_length=1, max_length=20, description="a duration: 1h, 24h, 7d, 30d")


class AlertsIn(Request):
    limit: int = Field(default=50, ge=1, le=10000)
    active: bool = Field(default=False, description="only firing alerts")


class VersionsIn(Request):
    recipe: str | None = RecipeName


class VersionDiffIn(Request):
    a: str = Field(min_length=1, max_length=200, pattern=REF_PATTERN)
    b: str = Field(min_length=1, max_length=200, pattern=REF_PATTERN)
    recipe: str | None = RecipeName


def describe(exc: ValidationError | Sequence[Any]) -> str:
    """A validation error (pydantic's, or FastAPI's list of them) as one line naming the field,
    the same from the CLI and from the API."""
    errors = exc.errors() if isinstance(exc, ValidationError) else list(exc)
    if not errors:
        return "invalid request"
    err = errors[0]
    if err.get("type") == "json_invalid":
        detail = (err.get("ctx") or {}).get("error", "")
        return f"invalid request: the body is not valid JSON{f' ({detail})' if detail else ''}"
    where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
    message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if err.get("type") == "extra_forbidden":
        message = "unknown field"
    return f"invalid request: {where}: {message}"

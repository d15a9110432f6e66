"""Labeled queries for offline evaluation: our JSONL format, or BEIR's queries.jsonl plus a qrels file."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctx.errors import UserError

# Enough for any real evaluation set, small enough that one request to the daemon stays reasonable.
MAX_QUERIES = 10_000


@dataclass(frozen=True)
class LabeledQuery:
    """A query and the documents that answer it, each with a grade (above 0: relevant; higher: more so).

    A document is named by our document id, its key (a file's path relative to its source) or
    ``source:key``; whichever a label uses, it matches.
    """

    id: str
    query: str
    relevant: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "query": self.query, "relevant": self.relevant}


def load(path: Path, qrels: Path | None = None) -> list[LabeledQuery]:
    """The labeled queries of ``path``: JSONL ``{"id"?, "query", "relevant"}`` lines, or (with ``qrels``)
    BEIR queries ``{"_id", "text"}`` judged by a TSV ``query-id, corpus-id, score`` file."""
    queries = _beir(path, qrels) if qrels is not None else _jsonl(path)
    if not queries:
        raise UserError(f"{path}: no labeled queries in it")
    if len(queries) > MAX_QUERIES:
        raise UserError(f"{path}: {len(queries):,} queries; evaluate at most {MAX_QUERIES:,} at a time")
    return queries


def from_dicts(rows: list[Mapping[str, Any]]) -> list[LabeledQuery]:
    """Queries sent inline (as the CLI sends them to the daemon), checked like a file's lines."""
    out = [_labeled(row, f"query {i}", f"q{i}") for i, row in enumerate(rows, 1)]
    _unique(out, "the queries")
    if not out:
        raise UserError("no labeled queries given")
    return out


def digest(queries: list[LabeledQuery]) -> str:
    """sha256 of the set's content (not its file): the same queries give the same digest in any format."""
    data = json.dumps([q.to_dict() for q in queries], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM is not part of the first line
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read it ({exc})") from None
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            yield number, line


def _object(path: Path, number: int, line: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{number}: not JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise UserError(f"{path}:{number}: expected a JSON object")
    return row


def _jsonl(path: Path) -> list[LabeledQuery]:
    out = []
    for number, line in _lines(path):
        row = _object(path, number, line)
        if "query" not in row and "_id" in row and "text" in row:
            raise UserError(f"{path}:{number}: a BEIR queries file: give its judgements with --qrels FILE")
        out.append(_labeled(row, f"{path}:{number}", f"q{number}"))
    _unique(out, str(path))
    return out


def _labeled(row: Mapping[str, Any], where: str, default_id: str) -> LabeledQuery:
    qid = row.get("id", default_id)
    if not isinstance(qid, str | int) or isinstance(qid, bool) or not str(qid).strip():
        raise UserError(f"{where}: \"id\" must be a non-empty string")
    query = row.get("query")
    if not isinstance(query, str) or not query.strip():
        raise UserError(f"{where}: \"query\" must be a non-empty string")
    return LabeledQuery(str(qid).strip(), query, _relevant(row.get("relevant"), where))


def _relevant(value: Any, where: str) -> dict[str, float]:
    if isinstance(value, list):
        value = dict.fromkeys(value, 1)
    if not isinstance(value, dict):
        raise UserError(f"{where}: \"relevant\" must be a list of document ids or an object {{id: grade}}")
    out: dict[str, float] = {}
    for doc, grade in value.items():
        if not isinstance(doc, str) or not doc.strip():
            raise UserError(f"{where}: a relevant document id must be a non-empty string")
        try:
            value = float(grade) if isinstance(grade, int | float) and not isinstance(grade, bool) else math.nan
        except OverflowError:  # an integer too large for a float
            value = math.nan
        if not math.isfinite(value):
            raise UserError(f"{where}: the grade of {doc!r} must be a number")
        out[doc.strip()] = value
    if not any(g > 0 for g in out.values()):
        raise UserError(f"{where}: no relevant document (one with a grade above 0)")
    return out


def _unique(queries: list[LabeledQuery], where: str) -> None:
    seen: set[str] = set()
    for q in queries:
        if q.id in seen:
            raise UserError(f"{where}: query id {q.id!r} appears twice")
        seen.add(q.id)


def _beir(path: Path, qrels: Path) -> list[LabeledQuery]:
    texts: dict[str, str] = {}
    for number, line in _lines(path):
        row = _object(path, number, line)
        qid, text = row.get("_id"), row.get("text")
        if not isinstance(qid, str | int) or isinstance(qid, bool) or not str(qid).strip():
            raise UserError(f"{path}:{number}: \"_id\" must be a non-empty string")
        if not isinstance(text, str) or not text.strip():
            raise UserError(f"{path}:{number}: \"text\" must be a non-empty string")
        if str(qid) in texts:
            raise UserError(f"{path}:{number}: query id {qid!r} appears twice")
        texts[str(qid)] = text
    judged: dict[str, dict[str, float]] = {}
    for number, line in _lines(qrels):
        qid, doc, grade = _qrel(qrels, number, line)
        if qid is None:
            continue  # the header line
        if qid not in texts:
            raise UserError(f"{qrels}:{number}: query id {qid!r} is not in {path}")
        judged.setdefault(qid, {})[doc] = grade
    # BEIR's queries.jsonl holds every split's queries; a split is the queries its qrels judge. Those
    # with no relevant document (all grades 0) measure nothing, as in pytrec_eval, and are left out.
    return [LabeledQuery(qid, texts[qid], rel) for qid, rel in judged.items() if any(g > 0 for g in rel.values())]


def _qrel(path: Path, number: int, line: str) -> tuple[str | None, str, float]:
    """One judgement: ``query-id TAB corpus-id TAB score`` (BEIR) or ``qid 0 docno rel`` (TREC)."""
    fields = line.split("\t") if "\t" in line else line.split()
    fields = [f.strip() for f in fields]
    if len(fields) == 4:  # TREC qrels: the second column is unused
        fields = [fields[0], fields[2], fields[3]]
    if len(fields) != 3 or not fields[0] or not fields[1]:
        raise UserError(f"{path}:{number}: expected query-id<TAB>corpus-id<TAB>score")
    try:
        grade = float(fields[2])
        if not math.isfinite(grade):
            raise ValueError(grade)
    except ValueError:
        if number == 1:
            return None, "", 0.0  # a header, e.g. "query-id corpus-id score"
        raise UserError(f"{path}:{number}: the score {fields[2]!r} is not a number") from None
    return fields[0], fields[1], grade

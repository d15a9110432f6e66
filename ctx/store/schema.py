"""The catalog's schema as ordered migrations; a new home and an old one converge on the same tables."""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("ctx")


@migrations()
def m001_initial(db: Database) -> None:
    db.table("sources").create(
        {
            "name": str, "kind": str, "config_hash": str, "freshness": str, "max_staleness": float,
            "criticality": str, "mode": str, "last_sync_at": str, "last_success_at": str, "last_error": str,
        },
        pk="name",
    )
    db.table("ingest_runs").create(
        {
            "id": str, "started_at": str, "finished_at": str, "status": str, "sources": str,
            "counts": str, "seconds": float, "embed_seconds": float, "model_id": str, "error": str, "pid": int,
        },
        pk="id",
    )
    db.table("documents").create(
        {
            "id": str, "source": str, "key": str, "tenant": str, "title": str, "format": str,
            "content_hash": str, "version": int, "summary": str, "token_count": int, "chunk_count": int,
            "metadata": str, "created_at": str, "updated_at": str, "run_id": str,
        },
        pk="id",
    )
    db.table("documents").create_index(["source", "key"], unique=True)
    db.table("document_versions").create(
        {
            "doc_id": str, "version": int, "source": str, "key": str, "content_hash": str, "title": str,
            "text": str, "metadata": str, "run_id": str, "created_at": str, "deleted_at": str,
        },
        pk=("doc_id", "version"),
    )
    db.table("chunks").create(
        {
            "id": str, "doc_id": str, "source": str, "tenant": str, "version": int, "ordinal": int,
            "heading": str, "text": str, "start": int, "end": int, "token_count": int,
            "heading_path": str, "content_hash": str, "run_id": str,
        },
        pk="id",
    )
    db.table("chunks").create_index(["doc_id"])
    db.table("chunks").create_index(["tenant"])  # has_tenants() must not scan every chunk
    # External-content FTS5 kept in step by triggers, so a chunk write and its index entry
    # commit in the same transaction.
    db.table("chunks").enable_fts(["heading", "text"], fts_version="FTS5", create_triggers=True, tokenize="porter")
    # Document frequency per indexed term, so retrieval can tell common query words from rare ones.
    db.execute("create virtual table chunks_fts_vocab using fts5vocab('chunks_fts', 'row')")
    db.table("quarantine").create(
        {
            "id": int, "run_id": str, "source": str, "record_id": str, "reason": str, "raw": str,
            "created_at": str, "last_seen_at": str, "seen": int,
        },
        pk="id",
    )
    # One row per (source, record, reason): a bad line re-read by every run is one problem, seen N times.
    db.table("quarantine").create_index(["source", "record_id", "reason"], unique=True)
    db.table("traces").create(
        {
            "id": str, "created_at": str, "query": str, "request": str, "config_fingerprint": str,
            "candidates": bytes, "timings": str, "tokens": int, "budget": int, "model": str, "format": str,
            "encoding": str, "rendered": bytes, "rendered_sha256": str, "degradations": str,
            "replay_of": str,
        },
        pk="id",
    )


@migrations()
def m002_jobs_and_queue(db: Database) -> None:
    # An ingest run becomes a job: queued by the CLI, the API, the scheduler or a file watcher, run
    # by whoever holds the home (the daemon, or the CLI in-process) and resumable after a crash.
    runs = db.table("ingest_runs")
    for column, kind in (("kind", str), ("trigger", str), ("created_at", str), ("summary", str)):
        runs.add_column(column, kind)
    runs.create_index(["status"])
    # Per (job, source): whether fetching finished (then only queued items remain to process),
    # whether the sync was finalized (mirror deletions applied) and its running counts.
    db.table("job_sources").create(
        {"job_id": str, "source": str, "fetched": int, "finalized": int, "summary": str, "error": str},
        pk=("job_id", "source"),
    )
    # The durable queue between fetching and processing. An item is acked in the same transaction
    # that writes its document, so a crash leaves it pending, never half-applied.
    db.table("queue").create(
        {"seq": int, "job_id": str, "source": str, "key": str, "payload": bytes, "payload_hash": str,
         "state": str, "enqueued_at": str},
        pk="seq",
    )
    db.table("queue").create_index(["job_id", "source", "key"], unique=True)
    db.table("queue").create_index(["job_id", "source", "state", "seq"])


@migrations()
def m003_data_versions_and_assembly_traces(db: Database) -> None:
    # A counter per source that moves with every document write or delete, in the same transaction
    # (triggers, so no write path can forget it). Cached contexts are keyed by these versions, so new
    # data is never hidden behind a cache entry.
    db.execute("create table data_versions (source text primary key, version integer not null)")
    for event, row in (("insert", "new"), ("update", "new"), ("delete", "old")):
        db.execute(
            f"create trigger documents_version_{event} after {event} on documents begin "
            f"insert into data_versions (source, version) values ({row}.source, 1) "
            "on conflict (source) do update set version = version + 1; end"
        )
    # Sessions are read newest first per source.
    db.table("documents").create_index(["source", "created_at"])
    traces = db.table("traces")
    for column, kind in (("recipe", str), ("providers", str), ("cache", str), ("cost", float)):
        traces.add_column(column, kind)


@migrations()
def m004_trace_status_tenant_costs(db: Database) -> None:
    # Observability reads traces by time window and groups them by tenant and outcome; a request whose
    # critical provider gave nothing is traced too (status "failed"), so availability can be measured.
    traces = db.table("traces")
    for column in ("status", "tenant", "costs", "error"):
        traces.add_column(column, str)
    traces.create_index(["created_at"])


@migrations()
def m005_sync_ledger_and_trace_relevance(db: Database) -> None:
    # One row per finished sync of a source: when, whether it worked, and how long the source had gone
    # without a successful sync at that moment against its threshold. The freshness SLO and the
    # staleness baselines read this history; the sources table only holds the latest sync.
    db.table("syncs").create(
        {"id": int, "source": str, "job_id": str, "at": str, "ok": int, "lag_s": float, "limit_s": float},
        pk="id",
    )
    db.table("syncs").create_index(["at"])
    db.table("syncs").create_index(["source", "at"])
    # What SLOs, alerts and the cost ledger read of each trace, computed once when it is written (see
    # TraceRecord): a window is then a query over small columns, not a pass over every compressed
    # candidate list and JSON document. Older traces keep NULL here and are read the slow way.
    traces = db.table("traces")
    for column, kind in (("total_ms", float), ("complete", int), ("relevance", float), ("ledger", str)):
        traces.add_column(column, kind)


@migrations()
def m006_alerts(db: Database) -> None:
    # One row per incident of an anomaly rule and key (a source name, or "" for the whole home): firing
    # until the metric is back in band, then resolved. Dedup, cooldown and escalation are read from these
    # rows, so they hold across daemon restarts; the partial unique index makes a second firing row for
    # the same rule and key impossible, whoever evaluates.
    db.table("alerts").create(
        {
            "id": str, "rule": str, "key": str, "severity": str, "metric": str, "window_s": float, "state": str,
            "message": str, "value": float, "baseline": float, "z": float, "count": int, "step": int,
            "first_at": str, "last_at": str, "resolved_at": str, "bucket_at": str, "clock_at": str,
            "step_at": str, "suppressed_until": str, "sources": str,
        },
        pk="id",
    )
    db.execute("create unique index alerts_firing on alerts (rule, key) where state = 'firing'")
    db.table("alerts").create_index(["rule", "key", "resolved_at"])
    # The outbox of every alert's steps (actions, webhook messages): written in the transaction that
    # decides them, delivered after it commits, retried until delivered or given up, so a crash between
    # deciding and sending loses nothing.
    db.table("alert_notifications").create(
        {
            "id": int, "alert_id": str, "step": int, "event": str, "kind": str, "target": str, "status": str,
            "attempts": int, "error": str, "detail": str, "created_at": str, "updated_at": str, "claimed_at": str,
        },
        pk="id",
    )
    db.table("alert_notifications").create_index(["status"])
    db.table("alert_notifications").create_index(["alert_id"])


@migrations()
def m007_versions_experiments_eval_archive(db: Database) -> None:
    # Configuration versions: the effective chunking, embedding, retrieval and assembly settings of one
    # recipe, stored once under their fingerprint and never changed. Labels point at versions per recipe;
    # every move of a label is kept, so a rollback knows where the label was before.
    db.table("versions").create({"id": str, "recipe": str, "config": str, "created_at": str}, pk="id")
    db.table("version_labels").create(
        {"recipe": str, "label": str, "version": str, "updated_at": str}, pk=("recipe", "label"))
    db.table("label_moves").create(
        {"id": int, "recipe": str, "label": str, "version": str, "previous": str, "action": str, "at": str},
        pk="id",
    )
    db.table("label_moves").create_index(["recipe", "label", "id"])
    # What a trace was assembled with and why: the version, the experiment and variant that chose it,
    # and who served it (daemon or cli).
    traces = db.table("traces")
    for column in ("version", "experiment", "variant", "origin"):
        traces.add_column(column, str)
    traces.create_index(["experiment", "variant"])
    # Offline evaluation runs: per version, the aggregate metrics over one queries file.
    db.table("eval_runs").create(
        {"id": str, "created_at": str, "version": str, "recipe": str, "queries": str, "queries_sha256": str,
         "k": int, "count": int, "metrics": str},
        pk="id",
    )
    db.table("eval_runs").create_index(["version", "created_at"])
    # Old document versions move to the cold tier (compressed files under archive/); this manifest says
    # which file holds each one, so an archived version can still be read and --as-of still sees it.
    db.table("archived_versions").create(
        {"doc_id": str, "version": int, "source": str, "key": str, "tenant": str, "file": str,
         "created_at": str, "superseded_at": str, "deleted_at": str},
        pk=("doc_id", "version"),
    )
    db.table("archived_versions").create_index(["created_at"])
    # A version's tenant and format, so the data as it was (--as-of) keeps tenant isolation and is chunked
    # the way it was, even after the document itself is gone.
    versions = db.table("document_versions")
    versions.add_column("tenant", str)
    versions.add_column("format", str)
    db.execute(
        "update document_versions set tenant = (select d.tenant from documents d where d.id = doc_id), "
        "format = (select d.format from documents d where d.id = doc_id)"
    )
    versions.create_index(["created_at"])


@migrations()
def m008_document_version_lineage(db: Database) -> None:
    # Which versions are superseded, and since when, is read at the end of every ingest job (the archive
    # pass) and for every --as-of request: a covering index in (doc_id, created_at) order answers both
    # from a small index scan, without reading the versions' text.
    db.execute("create index if not exists document_versions_lineage on document_versions "
               "(doc_id, created_at, version, deleted_at, tenant, source, format)")


@migrations()
def m009_documents_processed_with(db: Database) -> None:
    # The chunking and enrichment a document's chunks were made with: a change of either re-processes the
    # document at the next ingest even though its content is the same (NULL, from before: taken as current).
    db.table("documents").add_column("processed_with", str)


@migrations()
def m010_eval_runs_data(db: Database) -> None:
    # The data an eval run searched over (``Catalog.data_fingerprint``), so runs on different data are not
    # compared as if only the version differed; NULL for runs from before it was recorded.
    db.table("eval_runs").add_column("data_sha256", str)


_FTS_COLUMNS = '"title", "heading", "text"'
_FTS_NEW = '(new.rowid, new."title", new."heading", new."text")'
_FTS_OLD = """('delete', old.rowid, old."title", old."heading", old."text")"""


@migrations()
def m011_chunk_titles_in_fts(db: Database) -> None:
    # A document's title is often the most precise words about it (a paper's, a page's) and was found by
    # no query: only chunk headings and text were indexed. Each chunk now carries its document's title
    # (the FTS5 index is external-content, so what it indexes must be a column of chunks), and the index
    # is rebuilt with the title as its first column (about 6 s at 100,000 chunks).
    # The statements are what sqlite-utils' disable_fts/enable_fts run, one by one: those use executescript,
    # which commits mid-migration, and a kill -9 there would leave a home without its index. Here the whole
    # migration is one transaction with its record.
    if "title" not in db.table("chunks").columns_dict:
        db.execute("alter table chunks add column title text")
    for statement in ("drop table if exists chunks_fts_vocab", "drop trigger if exists chunks_ai",
                      "drop trigger if exists chunks_ad", "drop trigger if exists chunks_au",
                      "drop table if exists chunks_fts"):
        db.execute(statement)
    db.execute("update chunks set title = (select d.title from documents d where d.id = chunks.doc_id)")
    db.execute(f"create virtual table chunks_fts using fts5 ({_FTS_COLUMNS}, tokenize='porter', content=\"chunks\")")
    db.execute(f"insert into chunks_fts (rowid, {_FTS_COLUMNS}) select rowid, {_FTS_COLUMNS} from chunks")
    db.execute(f"create trigger chunks_ai after insert on chunks begin "
               f"insert into chunks_fts (rowid, {_FTS_COLUMNS}) values {_FTS_NEW}; end")
    db.execute(f"create trigger chunks_ad after delete on chunks begin "
               f"insert into chunks_fts (chunks_fts, rowid, {_FTS_COLUMNS}) values {_FTS_OLD}; end")
    db.execute(f"create trigger chunks_au after update on chunks begin "
               f"insert into chunks_fts (chunks_fts, rowid, {_FTS_COLUMNS}) values {_FTS_OLD}; "
               f"insert into chunks_fts (rowid, {_FTS_COLUMNS}) values {_FTS_NEW}; end")
    db.execute("create virtual table chunks_fts_vocab using fts5vocab('chunks_fts', 'row')")

"""The Redis key schema: the ONLY place Redis key strings are built.

::

    {prefix}:projects                       SET     project ids known to the store
    {prefix}:annotations                    HASH    annotation id -> "project:task_id"
    {prefix}:events                         HASH    event type -> count (for /metrics)
    {prefix}:p:{project}:project            HASH    label_config, config_hash, id2label, updated_at
    {prefix}:p:{project}:manifest           HASH    task id -> version of its entry in snapshots
    {prefix}:p:{project}:failures           HASH    task id -> JSON failure of a task in error
    {prefix}:p:{project}:states             HASH    task id -> JSON status record
    {prefix}:p:{project}:deleted            HASH    task id -> Redis time it was deleted (tombstone)
    {prefix}:p:{project}:status_counts      HASH    status -> how many states have it (/metrics)
    {prefix}:p:{project}:agreement          HASH    task id -> JSON agreement record (its pairs' PQ)
    {prefix}:p:{project}:agreement_totals   HASH    pairs, pq_sum over every record (/metrics)
    {prefix}:p:{project}:blob:{task}:{ver}  HASH    one immutable stored entry
    {prefix}:p:{project}:pending:{task}     STRING  coalescing flag (dispatcher)
    {prefix}:p:{project}:event:{task}       STRING  Redis time of the task's latest event (debounce)
    {prefix}:p:{project}:config_checked     STRING  hash of the config last fetched (config_cache)
    {prefix}:p:{project}:review:...         the review page's index (worker.review_index)
    {prefix}:p:{project}:thumb:{task}:{ver}:{side}  STRING  cached thumbnail (TTL)
    {prefix}:p:{project}:photo:{task}:{ver}:{side}  STRING  cached review photo (TTL)
    {prefix}:p:{project}:areas:{task}:{ver}         STRING  cached segment areas (TTL)

Every key of a project starts with :meth:`Keys.project_prefix`. Ids are non-negative integers
and versions lower-case hex, checked here, so no caller can smuggle a separator or a glob
character into a key.
"""

from __future__ import annotations

import re

__all__ = ["DEFAULT_PREFIX", "Keys", "is_version"]

DEFAULT_PREFIX = "lsp"
_PREFIX = re.compile(r"[A-Za-z0-9_.:-]+")
_VERSION = re.compile(r"[0-9a-f]{1,64}")


def is_version(value: object) -> bool:
    """Whether ``value`` can be an entry blob's version (see :meth:`Keys.blob`)."""
    return isinstance(value, str) and _VERSION.fullmatch(value) is not None


def _id(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, not {value!r}")
    return value


class Keys:
    """Builds every key under one prefix (``LS_PANOPTIC_KEY_PREFIX``)."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        if not _PREFIX.fullmatch(prefix):
            raise ValueError(f"key prefix {prefix!r}: use letters, digits and _ . : - only")
        self.prefix = prefix

    def __repr__(self) -> str:
        return f"Keys({self.prefix!r})"

    def projects(self) -> str:
        """SET of the project ids known to the store."""
        return f"{self.prefix}:projects"

    def annotations(self) -> str:
        """HASH annotation id -> ``"project:task_id"`` (``ANNOTATIONS_DELETED`` has ids only)."""
        return f"{self.prefix}:annotations"

    def events(self) -> str:
        """HASH event type -> count, for ``/metrics``."""
        return f"{self.prefix}:events"

    def project_prefix(self, project: int) -> str:
        """The common start of every key of ``project``."""
        return f"{self.prefix}:p:{_id(project, 'project id')}:"

    def project(self, project: int) -> str:
        """HASH: label_config, config_hash, id2label (JSON), updated_at."""
        return self.project_prefix(project) + "project"

    def manifest(self, project: int) -> str:
        """HASH task id -> version id of the task's current entry blob: the entries a snapshot
        holds (a failed task's last good entry is not here: ``EntryState.stale_version``)."""
        return self.project_prefix(project) + "manifest"

    def failures(self, project: int) -> str:
        """HASH task id -> JSON ``{task_id, key, message}`` of each task whose state is
        ``error``: what a snapshot lists in place of an entry. Written with the states, in the
        same transactions, so a snapshot pins it with the manifest at one instant."""
        return self.project_prefix(project) + "failures"

    def states(self, project: int) -> str:
        """HASH task id -> JSON status record."""
        return self.project_prefix(project) + "states"

    def deleted(self, project: int) -> str:
        """HASH task id -> ISO time (Redis clock) the task was found deleted: a tombstone, so a
        sync that pulled the task before it was deleted cannot bring its entry back."""
        return self.project_prefix(project) + "deleted"

    def status_counts(self, project: int) -> str:
        """HASH status -> how many of the project's states have it, kept by every state write
        (so ``/metrics`` need not read every state)."""
        return self.project_prefix(project) + "status_counts"

    def agreement(self, project: int) -> str:
        """HASH task id -> JSON agreement record (:mod:`worker._store_agreement`) of each task
        with a compared pair of annotations; written with the states, in the same transactions."""
        return self.project_prefix(project) + "agreement"

    def agreement_totals(self, project: int) -> str:
        """HASH ``pairs`` (int), ``pq_sum`` (float) over every agreement record of the project,
        kept by every record write (so ``/metrics`` need not read the records)."""
        return self.project_prefix(project) + "agreement_totals"

    def blob(self, project: int, task_id: int, version: str) -> str:
        """HASH: one immutable stored entry (see :mod:`worker.store`)."""
        if not is_version(version):
            raise ValueError(f"entry version must be lower-case hex, not {version!r}")
        return f"{self.project_prefix(project)}blob:{_id(task_id, 'task id')}:{version}"

    def blob_pattern(self, project: int) -> str:
        """``SCAN MATCH`` pattern of every entry blob of ``project`` (current or superseded)."""
        return self.project_prefix(project) + "blob:*"

    def pending(self, project: int, task_id: int) -> str:
        """STRING flag: a sync job for this task is queued and has not started yet."""
        return f"{self.project_prefix(project)}pending:{_id(task_id, 'task id')}"

    def last_event(self, project: int, task_id: int) -> str:
        """STRING: the Redis server time (``seconds.micros``) of the task's latest sync event."""
        return f"{self.project_prefix(project)}event:{_id(task_id, 'task id')}"

    def config_checked(self, project: int) -> str:
        """STRING: hash of the label config last fetched from Label Studio; its TTL is the
        config cache's lifetime (``LS_PANOPTIC_CONFIG_TTL_S``, :mod:`worker.config_cache`)."""
        return self.project_prefix(project) + "config_checked"

    # The review page's index (worker.review_index): its Lua script appends the suffixes below
    # to ``review_prefix`` itself (one key per status, class and annotator), so the schema of
    # these keys is written twice: here and in that script (a test in
    # tests/integration/test_review_index.py checks they agree).

    def review_prefix(self, project: int) -> str:
        """The common start of the review index's keys of ``project``."""
        return self.project_prefix(project) + "review:"

    def review_rows(self, project: int) -> str:
        """HASH task id -> compact JSON row of the review grid (``worker.review_index.Row``)."""
        return self.review_prefix(project) + "rows"

    def review_order(self, project: int, by: str) -> str:
        """ZSET of the indexed task ids, scored by ``task`` (the id) or ``changed`` (the Redis
        time of the task's latest state write)."""
        if by not in ("task", "changed"):
            raise ValueError(f"review order must be 'task' or 'changed', not {by!r}")
        return f"{self.review_prefix(project)}order:{by}"

    def review_status(self, project: int, status: str) -> str:
        """SET of the task ids whose row has ``status`` (``stale``: an error keeping an entry)."""
        return f"{self.review_prefix(project)}status:{_word(status, 'status')}"

    def review_class(self, project: int, class_id: int) -> str:
        """SET of the task ids whose entry has at least one segment of ``class_id``."""
        return f"{self.review_prefix(project)}class:{_id(class_id, 'class id')}"

    def review_annotator(self, project: int, annotator: str) -> str:
        """SET of the task ids whose entry comes from ``annotator`` (a user id, or ``-``)."""
        return f"{self.review_prefix(project)}annotator:{_word(annotator, 'annotator')}"

    def review_counts(self, project: int, what: str) -> str:
        """HASH status, class id or annotator (``what``) -> how many rows have it."""
        if what not in ("status", "class", "annotator"):
            raise ValueError(f"review counts are per status, class or annotator, not {what!r}")
        return f"{self.review_prefix(project)}counts:{what}"

    def review_changes(self, project: int) -> str:
        """ZSET task id -> sequence number of its latest change (the page's live updates)."""
        return self.review_prefix(project) + "changes"

    def review_seq(self, project: int) -> str:
        """STRING counter: the sequence number of the latest change of the index."""
        return self.review_prefix(project) + "seq"

    def review_built(self, project: int) -> str:
        """STRING: present once the index holds every state (built lazily; see review_index)."""
        return self.review_prefix(project) + "built"

    def review_building(self, project: int) -> str:
        """STRING ``done/total`` with a TTL (renewed per batch): one process is building the
        index; the others show that progress instead of a partly built index."""
        return self.review_prefix(project) + "building"

    def review_scratch(self, project: int, token: str) -> str:
        """ZSET, short-lived: one query's filtered tasks (``token``: hex, unique per query)."""
        if not is_version(token):
            raise ValueError(f"scratch token must be lower-case hex, not {token!r}")
        return f"{self.review_prefix(project)}scratch:{token}"

    def thumbnail(self, project: int, task_id: int, version: str, side: int) -> str:
        """STRING, with a TTL: a JPEG thumbnail of entry ``version`` drawn over its photo."""
        if not is_version(version):
            raise ValueError(f"entry version must be lower-case hex, not {version!r}")
        task, size = _id(task_id, "task id"), _id(side, "thumbnail side")
        return f"{self.project_prefix(project)}thumb:{task}:{version}:{size}"

    def review_photo(self, project: int, task_id: int, version: str, side: int) -> str:
        """STRING, with a TTL: the photo alone (JPEG) at the size of entry ``version``'s mask
        sampled to ``side`` (the review's detail view draws the entry over it itself)."""
        if not is_version(version):
            raise ValueError(f"entry version must be lower-case hex, not {version!r}")
        task, size = _id(task_id, "task id"), _id(side, "photo side")
        return f"{self.project_prefix(project)}photo:{task}:{version}:{size}"

    def review_areas(self, project: int, task_id: int, version: str) -> str:
        """STRING, with a TTL: JSON ``{instance id: pixels}`` of entry ``version``'s full-size
        mask (the review's detail view names each segment's area)."""
        if not is_version(version):
            raise ValueError(f"entry version must be lower-case hex, not {version!r}")
        return f"{self.project_prefix(project)}areas:{_id(task_id, 'task id')}:{version}"

    def listed_in_full(self, project: int) -> str:
        """STRING, with a TTL (``worker.reconcile.FULL_LISTING_SECONDS``): set by a resync that
        listed every task in full; while it lives, resyncs may decide from task stamps alone."""
        return self.project_prefix(project) + "listed_in_full"


_WORD = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _word(value: str, what: str) -> str:
    if not isinstance(value, str) or not _WORD.fullmatch(value):
        raise ValueError(f"{what} must be letters, digits, _ or - (at most 64), not {value!r}")
    return value

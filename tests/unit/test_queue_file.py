"""Queue definitions: the Queue model's checks and migration, and queue files with line numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from skypanda.domain.errors import InvalidInput
from skypanda.domain.models import Queue, QueueStatus
from skypanda.formats.queuefile import load_queue_file, parse_queues

REPO = Path(__file__).resolve().parents[2]


def test_reference_file_loads() -> None:
    queues = load_queue_file(REPO / "infra" / "queues.yaml")
    assert "local" in {q.name for q in queues}
    assert len({q.name for q in queues}) == len(queues)


def test_a_queue_file_with_limits() -> None:
    queues = parse_queues(
        """
- name: big
  status: online
  pilot_resources: {memory_mb: 32000, cores: 8}
  max_memory_per_core_mb: 4000
  max_cores: 8
  max_walltime_s: 2d
  disk_gb: 100
  gpus: 1
- name: tq
  status: test
"""
    )
    big, tq = queues
    assert (big.max_walltime_s, big.disk_gb, big.gpus, big.cores_limit) == (172800, 100, 1, 8)
    assert tq.status is QueueStatus.TEST and tq.online


def test_errors_name_queue_field_and_line_for_every_bad_queue() -> None:
    text = """\
- name: good
- name: q1
  status: sleeping
- name: q2
  max_pilots: 1
  min_pilots: 3
- name: q3
  pilot_resources: {cores: 2}
  max_cores: 4
"""
    with pytest.raises(InvalidInput) as info:
        parse_queues(text, "queues.yaml")
    message = info.value.message
    assert "queues.yaml: line 3: queue 'q1': status: Input should be 'online'" in message
    assert "queues.yaml: line 4: queue 'q2': (queue): Value error, min_pilots (3)" in message
    assert "line 7: queue 'q3': (queue): Value error, max_cores (4) exceeds" in message
    assert "good" not in message


def test_unknown_field_and_duplicate_name() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_queues("- name: a\n  max_ram: 3\n- name: a\n", "f")
    assert "f: line 2: queue 'a': max_ram: Extra inputs are not permitted" in info.value.message
    with pytest.raises(InvalidInput, match="f: line 3: queue 'a': defined twice"):
        parse_queues("- name: a\n- name: b\n- name: a\n", "f")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name: a\n", "a queue file is a non-empty list"),
        ("[]\n", "a queue file is a non-empty list"),
        ("- [1, 2]\n", "line 1: queue #1: must be a mapping"),
        ("- {name: a\n", "not valid YAML"),
        ("- max_pilots: 2\n", "line 1: queue #1: name: Field required"),
    ],
)
def test_malformed_files(text: str, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        parse_queues(text)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot read file"):
        load_queue_file(tmp_path / "missing.yaml")


# -- the Queue model -------------------------------------------------------------------------------


@pytest.mark.parametrize(("online", "status"), [(True, "online"), (False, "offline")])
def test_old_online_field_migrates_to_status(online: bool, status: str) -> None:
    # Given a queue stored before `status` existed
    old = f'{{"name": "q", "online": {str(online).lower()}}}'
    # When it is loaded, it has the matching status and `online` still answers
    queue = Queue.model_validate_json(old)
    assert queue.status == status and queue.online is online
    # and it is stored back without the old field
    assert "online" not in queue.model_dump()


def test_online_contradicting_status_is_refused() -> None:
    with pytest.raises(ValidationError, match="online: False contradicts status: online"):
        Queue.model_validate({"name": "q", "online": False, "status": "online"})


def test_auto_is_reserved() -> None:
    with pytest.raises(ValidationError, match="'auto' is reserved"):
        Queue(name="auto")


def test_new_fields_validate() -> None:
    with pytest.raises(ValidationError, match="max_memory_per_core_mb"):
        Queue(name="q", max_memory_per_core_mb=0)
    with pytest.raises(ValidationError, match="gpus"):
        Queue(name="q", gpus=-1)
    with pytest.raises(ValidationError, match="max_walltime_s"):
        Queue(name="q", max_walltime_s="soon")

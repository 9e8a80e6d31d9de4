"""panda-client's task parameters to a skypanda task, and skypanda's tasks and jobs back in
PanDA's words: each mapped field both ways, each refusal naming its field."""

from __future__ import annotations

import gzip
import json
import shlex
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skypanda.api.panda import client_mapping as cm
from skypanda.api.panda import client_views as cv
from skypanda.api.panda.client_files import sandbox_files
from skypanda.api.panda.mapping import PandaInputError, panda_id
from skypanda.domain.ids import job_id
from skypanda.domain.models import Job, Resources, Task, TaskSpec
from skypanda.domain.states import JobStatus, TaskStatus
from skypanda.wire.codes import ErrorCode
from tests.support import tar_archive

TASK = "t0123456789ab"


def _params(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "taskName": "user.alice.t1/", "transPath": "run.sh",
        "jobParameters": [{"type": "constant", "value": "-n 5"}], "noInput": True,
    }  # fmt: skip
    base.update(over)
    return base


def _spec(**over: Any) -> TaskSpec:
    return cm.submission(_params(**over)).spec


def _refused(params: dict[str, Any], parent: str | None = None) -> tuple[str, str]:
    with pytest.raises(PandaInputError) as e:
        cm.submission(params, parent)
    return str(e.value.context["field"]), e.value.message


# -- jediTaskID --------------------------------------------------------------------------------


def test_a_jedi_task_id_is_the_task_ids_hex_digits_and_decodes_back() -> None:
    number = cm.jedi_task_id(TASK)
    assert number == 0x0123456789AB
    assert cm.task_id_of(number) == TASK == cm.task_id_of(str(number))


@pytest.mark.parametrize("bad", ["abc", -1, 0, "1.5", True, None, 1 << 48, [1], "²", "9" * 5000])
def test_a_jedi_task_id_skypanda_did_not_issue_is_refused_naming_task_id(bad: object) -> None:
    with pytest.raises(PandaInputError, match="task_id") as e:
        cm.task_id_of(bad)
    assert e.value.context["field"] == "task_id"


# -- mapped fields -------------------------------------------------------------------------------


def test_task_name_drops_pruns_trailing_slash_and_user_name_is_not_the_owner() -> None:
    spec = _spec(userName="mallory")
    assert spec.name == "user.alice.t1"
    assert "mallory" not in spec.model_dump_json()


def test_trans_path_and_constant_job_parameters_make_the_command() -> None:
    spec = _spec(jobParameters=[
        {"type": "constant", "value": '-i "${IN/T}"'},
        {"type": "constant", "value": "--first=", "padding": False},
        {"type": "constant", "value": "${FIRSTEVENT}"},
        {"type": "constant", "value": "__delimiter__", "hidden": True},
        {"type": "constant", "value": "'a b' {x}"},
    ], pfnList=["f1", "f2"])  # fmt: skip
    assert spec.command == ["run.sh", "-i", "{input}", "--first={first_event}", "a b", "{{x}}"]


def test_pfn_list_is_the_inputs_split_by_n_files_per_job_and_cut_to_n_files() -> None:
    spec = _spec(pfnList=["a", "b", "c", "d"], nFilesPerJob=2, nFiles=3)
    assert (spec.inputs, spec.files_per_job) == (["a", "b", "c"], 2)


def test_files_split_by_events_need_events_per_file_and_per_job() -> None:
    spec = _spec(pfnList=["a"], nEventsPerFile=100, nEventsPerJob=25)
    assert (spec.events_per_input, spec.events_per_job) == (100, 25)
    assert _refused(_params(pfnList=["a"], nEventsPerJob=25))[0] == "nEventsPerFile"


def test_no_input_splits_by_events_or_pseudo_files_or_is_one_job() -> None:
    spec = _spec(nEvents=3, nEventsPerJob=1)  # prun --nJobs 3
    assert (spec.n_events, spec.events_per_job) == (3, 1)
    assert _spec(nEvents=10).events_per_job == 10
    assert _spec(nFiles=5, nFilesPerJob=2).n_jobs == 3
    assert _spec().n_jobs == 1


def test_resources_ram_per_core_cores_and_walltime_in_hours() -> None:
    per_core = _spec(ramCount=1000, ramCountUnit="MBPerCore", coreCount=4, maxWalltime=2)
    assert per_core.resources == Resources(memory_mb=4000, cores=4, walltime_s=7200)
    assert _spec(ramCount=1500, ramCountUnit="MB").resources.memory_mb == 1500


def test_attempts_priority_and_disable_auto_retry() -> None:
    spec = _spec(maxAttempt=5, currentPriority=900)
    assert (spec.max_attempts, spec.priority) == (5, 900)
    assert _spec(disableAutoRetry=1).max_attempts == 1
    assert _spec(taskPriority=7).priority == 7


def test_site_is_the_queue_and_without_one_brokerage_picks_among_included_less_excluded() -> None:
    assert _spec(site="CERN_Q").queue == "CERN_Q"
    auto = _spec(site=None, includedSite=["a", "b"], excludedSite="c,d")
    assert auto.queue == "auto" and auto.queues is not None
    assert (auto.queues.include, auto.queues.exclude) == (["a", "b"], ["c", "d"])
    assert _spec(site="AUTO", excludedSite=[]).queue == "auto"


def test_a_parent_task_is_waited_for_unless_no_wait_parent() -> None:
    child = cm.submission(_params(), parent_task_id=TASK).spec
    assert child.start_after is not None and child.start_after.task == TASK
    assert child.start_after.status == ["done", "finished"]
    assert cm.submission(_params(noWaitParent=True), parent_task_id=TASK).spec.start_after is None


def test_unique_task_name_is_kept_for_the_route_to_check() -> None:
    assert cm.submission(_params(uniqueTaskName=True)).unique_name is True
    assert cm.submission(_params()).unique_name is False


def test_pruns_run_gen_parameters_run_its_exec_with_its_numbers_and_outputs() -> None:
    # What `prun --exec "echo %RNDM:10 %IN > out.txt" --outputs out.txt` sends (runGen's)
    spec = _spec(transPath=None, jobParameters=[
        {"type": "constant", "value": '-j "" --sourceURL ${SURL}'},
        {"type": "constant", "value": "-a jobO.1.tar.gz"},
        {"type": "template", "value": "u.$JEDITASKID._${SN/P}.out.txt", "param_type": "output",
         "dataset": "u.out/", "hidden": True},
        {"type": "constant", "value": "-o \"{'out.txt': 'u.$JEDITASKID._${SN/P}.out.txt'}\""},
        {"type": "constant", "value": '-p "', "padding": False},
        {"type": "constant", "value": "echo%20", "padding": False},
        {"type": "template", "value": "${SEQNUMBER}", "param_type": "pseudo_input",
         "dataset": "seq_number", "offset": 10, "padding": False},
        {"type": "constant", "value": "%20%25IN%20%24%7BHOME%7D%20%3E%20out.txt",
         "padding": False},
        {"type": "constant", "value": '"'},
    ], nEvents=3, nEventsPerJob=1)  # fmt: skip
    assert spec.command == ["sh", "-c", "echo $((11+{index})) {input} ${{HOME}} > out.txt"]
    assert spec.outputs == ["out.txt"]


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize("field", sorted(cm.REFUSED))
def test_each_field_that_cannot_work_here_is_refused_naming_it(field: str) -> None:
    named, message = _refused(_params(**{field: "x"}))
    assert named == field and field in message and cm.REFUSED[field] in message


def test_an_unknown_field_is_refused_naming_it() -> None:
    field, message = _refused(_params(colour="red", zebra=1))
    assert field == "colour" and "'colour' (and 1 more)" in message


def test_ignored_fields_are_accepted_and_change_nothing() -> None:
    plain = _spec()
    noisy = _spec(**dict.fromkeys(sorted(cm.IGNORED - {"log"}), "x"), log={"value": "l"})
    assert noisy == plain


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"taskName": None}, "taskName"),
        ({"taskName": "a b"}, "taskName"),
        ({"transPath": None}, "transPath"),
        ({"transPath": 5}, "transPath"),
        ({"jobParameters": "x"}, "jobParameters"),
        ({"jobParameters": [{"type": "constant", "value": "'unclosed"}]}, "jobParameters"),
        ({"jobParameters": [{"type": "constant", "value": "${SN}"}]}, "jobParameters"),
        ({"jobParameters": [{"type": "constant", "value": "x", "colour": 1}]}, "jobParameters"),
        ({"jobParameters": [{"type": "template", "param_type": "input", "dataset": "d:x",
                             "value": "-i ${IN}"}]}, "jobParameters"),
        ({"jobParameters": [{"type": "template", "param_type": "output", "dataset": "o/",
                             "value": "o.root"}]}, "jobParameters"),
        ({"pfnList": []}, "pfnList"),
        ({"pfnList": ["a"], "nEvents": 5}, "nEvents"),
        ({"nEventsPerFile": 5}, "nEventsPerFile"),
        ({"nEventsPerJob": 5}, "nEventsPerJob"),
        ({"ramCount": "lots"}, "ramCount"),
        ({"ramCount": 10, "ramCountUnit": "GB"}, "ramCountUnit"),
        ({"coreCount": 0}, "coreCount"),
        ({"maxWalltime": -1}, "maxWalltime"),
        ({"maxWalltime": 24 * 31}, "maxWalltime"),
        ({"maxAttempt": 1000}, "maxAttempt"),
        ({"currentPriority": 10**9}, "currentPriority"),
        ({"site": "bad site"}, "site"),
        ({"includedSite": [1]}, "includedSite"),
        ({"uniqueTaskName": "yes"}, "uniqueTaskName"),
    ],
)  # fmt: skip
def test_bad_values_are_refused_naming_the_field(over: dict[str, Any], field: str) -> None:
    assert _refused(_params(**over))[0] == field


def test_pruns_exec_with_an_input_dataset_or_unfillable_placeholder_is_refused() -> None:
    run_gen = [{"type": "constant", "value": '-p "', "padding": False},
               {"type": "constant", "value": "echo", "padding": False},
               {"type": "constant", "value": '"'}]  # fmt: skip
    dataset = {"type": "template", "param_type": "input", "dataset": "data18:x",
               "value": '-i "${IN/T}"'}  # fmt: skip
    field, message = _refused(_params(transPath=None, jobParameters=[dataset, *run_gen]))
    assert field == "jobParameters" and "data18:x" in message and "Rucio" in message
    surl = {"type": "constant", "value": "%24%7BSURL%7D", "padding": False}
    field, message = _refused(
        _params(transPath=None, jobParameters=[*run_gen[:2], surl, run_gen[2]])
    )
    assert "SURL" in message
    assert "not closed" in _refused(_params(transPath=None, jobParameters=run_gen[:2]))[1]


# -- skypanda's tasks and jobs in PanDA's words -------------------------------------------------


def _task(status: TaskStatus = TaskStatus.RUNNING) -> Task:
    spec = TaskSpec(name="t1", command=["x"], n_jobs=4, priority=3)
    return Task(id=TASK, spec=spec, owner="alice", status=status, n_jobs=4,
                created_at=1_700_000_000.0, updated_at=1_700_000_060.0)  # fmt: skip


def test_task_states_map_to_jedis_and_back() -> None:
    assert {s: cv.task_status(s) for s in TaskStatus} == {
        **{s: str(s) for s in TaskStatus}, TaskStatus.SKIPPED: "broken",
        TaskStatus.CANCELLED: "broken",
    }  # fmt: skip
    assert cv.statuses_of("broken") == {TaskStatus.SKIPPED, TaskStatus.CANCELLED}
    assert cv.statuses_of("running", "superStatus") == {TaskStatus.RUNNING, TaskStatus.PAUSED}
    assert cv.statuses_of("registered", "superStatus") == {
        TaskStatus.REGISTERED, TaskStatus.PENDING
    }  # fmt: skip
    with pytest.raises(PandaInputError, match="exhausted") as e:
        cv.statuses_of("exhausted")
    assert e.value.context["field"] == "status"


def test_a_task_as_pbook_shows_it() -> None:
    counts = {JobStatus.FINISHED: 2, JobStatus.FAILED: 1, JobStatus.RUNNING: 1}
    info = cv.task_info(_task(), counts)
    assert info["jediTaskID"] == 0x0123456789AB and info["taskName"] == "t1"
    assert (info["status"], info["superStatus"], info["userName"]) == ("running", "running",
                                                                       "alice")  # fmt: skip
    assert info["creationDate"] == {"__datetime__": "2023-11-14T22:13:20"}
    assert info["modificationTime"] == {"__datetime__": "2023-11-14T22:14:20"}
    assert (info["nFiles"], info["nFilesFinished"], info["nFilesFailed"]) == (4, 2, 1)
    assert (info["pctFinished"], info["pctFailed"]) == (50, 25)
    done = cv.task_info(_task(TaskStatus.DONE), None)  # not counted: known for done only
    assert (done["nFilesFinished"], done["pctFinished"]) == (4, 100)
    assert cv.task_info(_task(), None)["pctFinished"] is None
    json.dumps(info)  # as the route sends it


def _job(**over: Any) -> Job:
    fields: dict[str, Any] = {
        "id": job_id(TASK, 2), "task_id": TASK, "index": 2, "status": JobStatus.FAILED,
        "attempt": 3, "max_attempts": 3, "failures": 3, "queue": "q1", "owner": "alice",
        "command": ["run.sh", "a b"], "inputs": ["gs://b/x.root"], "created_at": 0.0,
        "updated_at": 10.0, "started_at": 1.0, "ended_at": 9.0, "exit_code": 0,
        "error_code": ErrorCode.OUT_OF_MEMORY, "error_diag": "oom", "max_rss_mb": 100,
    }  # fmt: skip
    fields.update(over)
    return Job(**fields)


def test_a_job_as_get_job_status_reads_it() -> None:
    desc = cv.job_description(_job())
    assert desc["PandaID"] == panda_id(job_id(TASK, 2))
    assert (desc["jobStatus"], desc["attemptNr"], desc["maxAttempt"]) == ("failed", 3, 3)
    assert desc["jediTaskID"] == desc["taskID"] == 0x0123456789AB
    assert (desc["transformation"], desc["jobParameters"]) == ("run.sh", shlex.join(["a b"]))
    assert (desc["pilotErrorCode"], desc["pilotErrorDiag"]) == (1212, "oom")
    assert (desc["computingSite"], desc["prodUserName"], desc["maxRSS"]) == ("q1", "alice", 102400)
    assert desc["startTime"] == {"__datetime__": "1970-01-01T00:00:01"}
    assert desc["Files"][0]["lfn"] == "x.root" and desc["nInputFiles"] == 1


@pytest.mark.parametrize(
    ("code", "exit_code", "fields"),
    [
        (ErrorCode.PAYLOAD_FAILED, 7, {"exeErrorCode": 7, "exeErrorDiag": "d"}),
        (ErrorCode.LOST_HEARTBEAT, None, {"supErrorCode": 9002, "supErrorDiag": "d"}),
        (ErrorCode.KILLED_BY_SERVER, None, {"pilotErrorCode": 1144, "pilotErrorDiag": "d"}),
    ],
)
def test_a_jobs_error_is_pandas_pilot_payload_or_supervisor_error(
    code: int, exit_code: int | None, fields: dict[str, Any]
) -> None:
    desc = cv.job_description(_job(error_code=code, exit_code=exit_code, error_diag="d"))
    assert {k: desc[k] for k in fields} == fields
    assert desc["transExitCode"] == exit_code


def test_pbooks_query_decodes_and_bad_filters_are_refused_naming_them() -> None:
    args = {"n_tasks": "5000", "since": "2023-11-14 22:14:00",
            "filters": json.dumps({"status": "running", "taskName": "t1/"})}  # fmt: skip
    wanted = cv.task_filter(args, "alice")
    assert (wanted.owner, wanted.name, wanted.n_tasks) == ("alice", "t1", cv.MAX_TASKS)
    assert wanted.statuses == {TaskStatus.RUNNING}
    assert wanted.matches(_task()) and not wanted.matches(_task(TaskStatus.DONE))
    assert not cv.task_filter({"since": "2023-11-14 22:15:00"}, "alice").matches(_task())
    assert not cv.task_filter({}, "bob").matches(_task())
    assert cv.task_filter({"filters": '{"userName": "bob"}'}, "alice").owner == "bob"
    assert cv.task_filter({"filters": '{"jediTaskID": "5"}'}, "alice").task_id == f"t{5:012x}"
    assert cv.task_filter({"filters": '{"reqID": "45"}'}, "alice").any_req_id
    for bad, field in [({"n_tasks": "x"}, "n_tasks"), ({"n_tasks": "9" * 5000}, "n_tasks"),
                       ({"n_tasks": "²"}, "n_tasks"), ({"since": "today"}, "since"),
                       ({"filters": "[1]"}, "filters"), ({"filters": '{"cloud": "x"}'}, "cloud"),
                       ({"filters": '{"status": "weird"}'}, "status")]:  # fmt: skip
        with pytest.raises(PandaInputError) as e:
            cv.task_filter(bad, "alice")
        assert e.value.context["field"] == field


def test_a_sandbox_lists_its_files_and_refuses_what_is_not_a_tar_or_too_big() -> None:
    assert sandbox_files(tar_archive({})) == []
    assert sandbox_files(tar_archive({"a.py": b"1", "d/b.txt": b"2"}, zipped=False)) == [
        "a.py",
        "d/b.txt",
    ]
    for bad in (b"not a tar", gzip.compress(b"\0" * (17 * 1024 * 1024)), b"\x1f\x8bxx"):
        with pytest.raises(PandaInputError) as e:
            sandbox_files(bad)
        assert e.value.context["field"] == "file"


# -- any input: a task or a refusal naming a field, never a crash -------------------------------

_WORDS = ["constant", "template", '-p "', '"', "${SEQNUMBER}", "-o \"{'a': 'b'}\"", "%IN {x}"]
_SCALARS = (
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats()
    | st.text(max_size=30) | st.sampled_from(_WORDS)
)  # fmt: skip
_KEYS = st.sampled_from(["type", "value", "padding", "hidden", "param_type", "dataset", "offset"])
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=12,
)
_ITEMS = st.dictionaries(_KEYS, _SCALARS, max_size=5)
_OPEN = {"type": "constant", "value": '-p "', "padding": False}


def _made_or_refused(params: dict[str, Any]) -> None:
    try:
        sub = cm.submission(params)
    except PandaInputError as e:
        assert e.context["field"] and e.message
    else:
        assert sub.spec.command


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(cm.MAPPED | cm.IGNORED)), _VALUES, max_size=8))
def test_any_task_parameters_make_a_task_or_a_refusal_naming_a_field(extra: dict[str, Any]) -> None:
    _made_or_refused(_params(**extra))


@settings(max_examples=100, deadline=None)
@given(st.lists(_ITEMS, max_size=5), st.lists(_ITEMS, max_size=5))
def test_any_pruns_job_parameters_make_a_task_or_a_refusal(
    before: list[dict[str, Any]], after: list[dict[str, Any]]
) -> None:
    _made_or_refused(_params(transPath=None, jobParameters=[*before, _OPEN, *after]))

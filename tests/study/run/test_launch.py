"""The driver loop with the in-process executor: real Optuna journal storage and real MLflow
(SQLite), no cluster. Scripted trials make pruning, failures, worker deaths, timeouts and
interruptions deterministic; the plain ones run the real trainer."""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from study.query.status import summarize
from study.record import TrialRecord, mlflow_status
from study.run import launch as launching
from study.run.driver import Listener
from study.run.events import Ended, Epoch, Failed, Started
from study.run.executor import InProcessExecutor, WorkerDied
from study.run.prepare import Prepared, prepare
from study.run.samplers import trial_seed
from study.run.worker import trial_events
from study.spec import SpecError, parse_spec


def is_counted(t: optuna.trial.FrozenTrial) -> bool:
    return TrialRecord.of(t).counted


def in_process(trial_fn: Callable[..., Iterator[Any]] | None = None, log: list | None = None) -> launching.ExecutorFactory:
    def make(prep: Prepared) -> tuple[InProcessExecutor, Callable[[], None]]:
        ex = InProcessExecutor(prep.data, slots=2, trial_fn=trial_fn)
        return ex, ex.close

    return make


def launch(
    tiny_spec: Any,
    trial_fn: Any = None,
    listener: Listener | None = None,
    resume: bool = False,
    said: list | None = None,
    inline: bool = True,
    **changes: Any,
) -> launching.RunResult:
    """Run the tiny study in-process; MLflow written inline (`inline=False`: by the writer process)."""
    spec = parse_spec(tiny_spec(**changes))
    prep = prepare(spec)
    return launching.run_study(
        prep,
        resume=resume,
        executor=in_process(trial_fn),
        listener=listener,
        say=(said.append if said is not None else lambda m: None),
        inline_tracking=inline,
    )


def scripted(curves: Callable[[int], list[float]], *, n_params: int = 10) -> Callable[..., Iterator[Any]]:
    """Trials whose val_loss per epoch is `curves(number)`; `produced` counts epochs made."""

    def fn(number: int, config: Any, data: Any) -> Iterator[Any]:
        yield Started(number, {"pid": 0, "host": "here"})
        values = curves(number)
        for epoch, v in enumerate(values, 1):
            fn.produced[number] = epoch  # type: ignore[attr-defined]
            yield Epoch(number, epoch, {"train_loss": v / 2, "val_loss": v, "val_acc": 1 - v / 10})
        best = min(range(len(values)), key=lambda i: values[i]) + 1
        yield Ended(number, "completed", best_epoch=best, stopped_epoch=len(values), n_params=n_params)

    fn.produced = {}  # type: ignore[attr-defined]
    return fn


def mlflow_runs(workdir: Path, name: str = "tiny-study") -> tuple[Any, dict[int, Any], MlflowClient]:
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parent = [r for r in runs if r.data.tags.get("hpstudy.role") == "study"]
    assert len(parent) == 1
    children = {int(r.data.tags["trial_number"]): r for r in runs if "trial_number" in r.data.tags}
    for r in children.values():
        assert r.data.tags["mlflow.parentRunId"] == parent[0].info.run_id
    return parent[0], children, client


def assert_agree(study: optuna.Study, children: dict[int, Any]) -> None:
    """Every trial has a run; state, stop reason and status agree; nothing RUNNING."""
    trials = study.get_trials(deepcopy=False)
    assert sorted(children) == [t.number for t in trials if t.state != TrialState.WAITING]
    for t in trials:
        if t.state == TrialState.WAITING:
            continue
        run = children[t.number]
        assert t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        assert run.info.status == mlflow_status(t.state)
        assert run.data.tags["state"] == t.state.name
        assert run.data.tags["stop_reason"] == t.user_attrs["stop_reason"]


def test_real_trainer_study_records_every_epoch(workdir: Path, tiny_spec: Any) -> None:
    result = launch(tiny_spec, trials=4, seed=11, inline=False)
    study = result.study
    assert result.finished
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    parent, children, client = mlflow_runs(workdir)
    assert parent.info.status == "FINISHED"
    assert_agree(study, children)
    for t in trials:
        run = children[t.number]
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")]
        assert steps == sorted(t.intermediate_values) == [1, 2, 3]
        assert len(client.get_metric_history(run.info.run_id, "grad_norm_0")) == 3  # per-layer records too
        assert t.user_attrs["seed"] == trial_seed(11, t.number) == int(run.data.params["seed"])
        assert run.data.tags["seed"] == str(t.user_attrs["seed"])
        best = t.user_attrs["best_epoch"]
        assert t.value == pytest.approx(t.intermediate_values[best])  # scope best: value at the best epoch
        assert run.data.metrics["objective"] == pytest.approx(t.value)
        assert float(run.data.params["lr"]) == pytest.approx(t.params["lr"])
    assert parent.data.params["name"] == "tiny-study"
    assert client.get_metric_history(parent.info.run_id, "finished")[-1].value == 4


def test_pruned_trials_stop_early_and_free_their_slot(workdir: Path, tiny_spec: Any) -> None:
    # trials 0 and 1 are good; every later one is worse at every epoch and gets pruned at epoch 2
    fn = scripted(lambda n: [1.0, 0.5, 0.4, 0.3, 0.2, 0.1] if n < 2 else [3.0, 3.0, 3.0, 3.0, 3.0, 3.0])
    pruner = {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 2}  # Optuna: no pruning at steps < 2
    result = launch(tiny_spec, fn, trials=5, pruner=pruner, sampler="random")
    trials = result.study.get_trials()
    assert len([t for t in trials if is_counted(t)]) == 5
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert [t.number for t in pruned] == [2, 3, 4]
    for t in pruned:
        assert (
            t.user_attrs["stop_reason"] == "pruned" and t.user_attrs["pruned_step"] == 2 and t.user_attrs["pruned_value"] == 3.0
        )
        assert fn.produced[t.number] <= 3  # cancelled, not run to its 6 epochs
    _, children, client = mlflow_runs(workdir)
    assert_agree(result.study, children)
    for t in pruned:
        assert [m.step for m in client.get_metric_history(children[t.number].info.run_id, "val_loss")] == [1, 2]


def test_diverging_lr_is_a_failure_never_a_nan_value(workdir: Path, tiny_spec: Any) -> None:
    result = launch(tiny_spec, trials=1, fixed={"lr": 1e6, "optimizer": "sgd"})
    (t,) = result.study.get_trials()
    assert t.state == TrialState.FAIL and t.user_attrs["stop_reason"] == "diverged" and t.values is None
    assert all(math.isfinite(v) for v in t.intermediate_values.values())
    _, children, _ = mlflow_runs(workdir)
    assert_agree(result.study, children)
    assert children[0].info.status == "FAILED"


def test_failed_trial_keeps_its_message_and_the_study_goes_on(workdir: Path, tiny_spec: Any) -> None:
    ok = scripted(lambda n: [1.0, 0.5])

    def fn(number: int, config: Any, data: Any) -> Iterator[Any]:
        if number == 1:
            yield Started(number, {"pid": 0})
            yield Failed(number, "ValueError: boom in trial 1")
            return
        yield from ok(number, config, data)

    result = launch(tiny_spec, fn, trials=3)
    trials = result.study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].user_attrs["stop_reason"] == "failed" and "boom in trial 1" in trials[1].user_attrs["error"]
    assert "retried" not in trials[1].user_attrs  # failures are not retried
    _, children, _ = mlflow_runs(workdir)
    assert_agree(result.study, children)
    assert "boom" in children[1].data.tags["error"]


@pytest.mark.parametrize("retries", [0, 1])
def test_worker_death_is_retried_up_to_retries(workdir: Path, tiny_spec: Any, retries: int) -> None:
    ok = scripted(lambda n: [1.0, 0.5])

    def fn(number: int, config: Any, data: Any) -> Iterator[Any]:
        if number in (0, 3):  # the first trial dies, and so does its first re-run (trial 3)
            yield Started(number, {"pid": 0})
            raise WorkerDied("node lost")
        yield from ok(number, config, data)

    result = launch(tiny_spec, fn, trials=3, retries=retries, sampler="random")
    trials = {t.number: t for t in result.study.get_trials()}
    assert trials[0].user_attrs["stop_reason"] == "worker_died" and trials[0].state == TrialState.FAIL
    counted = [t for t in trials.values() if is_counted(t)]
    assert len(counted) == 3
    if retries == 0:
        assert "retried" not in trials[0].user_attrs and len(trials) == 3
    else:
        retry = [t for t in trials.values() if t.user_attrs.get("retry_of") == 0]
        assert len(retry) == 1 and retry[0].params == trials[0].params and retry[0].user_attrs["attempt"] == 1
        assert trials[0].user_attrs["retried"] is True
    _, children, _ = mlflow_runs(workdir)
    assert_agree(result.study, children)


def test_timeout_cancels_the_trial(workdir: Path, tiny_spec: Any) -> None:
    def fn(number: int, config: Any, data: Any) -> Iterator[Any]:
        yield Started(number, {"pid": 0})
        for epoch in range(1, 100):
            if number == 0:
                time.sleep(0.15)
            fn.last = epoch  # type: ignore[attr-defined]
            yield Epoch(number, epoch, {"train_loss": 1.0, "val_loss": 1.0})
            if number != 0 and epoch == 2:
                yield Ended(number, "completed", best_epoch=1, stopped_epoch=2, n_params=1)
                return

    result = launch(tiny_spec, fn, trials=2, timeout=0.5)
    t0 = result.study.trials[0]
    assert t0.state == TrialState.FAIL and t0.user_attrs["stop_reason"] == "timeout" and "timeout=0.5s" in t0.user_attrs["error"]
    assert 2 <= len(t0.intermediate_values) <= 6
    _, children, _ = mlflow_runs(workdir)
    assert_agree(result.study, children)


class StopAfter(Listener):
    """Presses Ctrl-C (SIGINT to this process, which the driver handles) once `n` trials have ended."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.ended = 0

    def on_trial_end(self, number: int, outcome: Any, snapshot: Any) -> None:
        self.ended += 1
        if self.ended == self.n:
            signal.raise_signal(signal.SIGINT)


def test_interrupt_records_running_trials_and_resume_completes(workdir: Path, tiny_spec: Any) -> None:
    fn = scripted(lambda n: [1.0, 0.9, 0.8] if n != 1 else [1.0] * 12)  # trial 1 is still running at the stop
    first = launch(tiny_spec, fn, listener=StopAfter(2), trials=5, sampler="random")
    assert not first.finished
    trials = first.study.get_trials()
    interrupted = [t for t in trials if t.user_attrs.get("stop_reason") == "interrupted"]
    assert len(interrupted) >= 1 and all(t.state == TrialState.FAIL and t.user_attrs["retried"] for t in interrupted)
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert sorted(t.user_attrs["retry_of"] for t in waiting) == sorted(t.number for t in interrupted)
    parent, children, _ = mlflow_runs(workdir)
    assert parent.info.status == "KILLED"
    assert_agree(first.study, children)

    second = launch(tiny_spec, scripted(lambda n: [1.0, 0.9]), resume=True, trials=5, sampler="random")
    assert second.finished
    trials = second.study.get_trials()
    assert sum(is_counted(t) for t in trials) == 5
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for t in interrupted:  # each interrupted trial re-ran once with the same parameters
        (rerun,) = [r for r in trials if r.user_attrs.get("retry_of") == t.number]
        assert rerun.params == t.params and is_counted(rerun)
    parent, children, _ = mlflow_runs(workdir)
    assert parent.info.status == "FINISHED"
    assert_agree(second.study, children)


class Crash(Exception):
    pass


class CrashAt(Listener):
    """Raises out of the driver in the middle of a trial: what SIGKILL leaves behind."""

    def on_epoch(self, number: int, epoch: int, metrics: Any) -> None:
        if number == 2 and epoch == 2:
            raise Crash


def test_resume_reconciles_what_a_dead_driver_left_running(workdir: Path, tiny_spec: Any) -> None:
    fn = scripted(lambda n: [1.0, 0.9, 0.8])
    with pytest.raises(Crash):
        launch(tiny_spec, fn, listener=CrashAt(), trials=5, sampler="random")
    study = optuna.load_study(
        study_name="tiny-study",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(workdir / "optuna.journal"))),
    )
    left = [t.number for t in study.get_trials() if t.state == TrialState.RUNNING]
    assert 2 in left
    running = {r["number"]: r["epoch"] for r in summarize(study)["running"]}  # what `study status` shows
    assert running[2] == 1  # the crash came before epoch 2 was reported
    said: list[str] = []
    result = launch(tiny_spec, fn, resume=True, trials=5, sampler="random", said=said)
    assert any("reconciled" in m for m in said)
    trials = result.study.get_trials()
    assert sum(is_counted(t) for t in trials) == 5
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for n in left:
        t = trials[n]
        assert t.state == TrialState.FAIL and t.user_attrs["stop_reason"] == "interrupted" and t.user_attrs["reconciled"]
        (rerun,) = [r for r in trials if r.user_attrs.get("retry_of") == n]
        assert rerun.params == t.params
    parent, children, _ = mlflow_runs(workdir)
    assert parent.info.status == "FINISHED"
    assert_agree(result.study, children)


def test_multi_objective_runs_without_pruning_and_says_so_once(workdir: Path, tiny_spec: Any) -> None:
    said: list[str] = []
    result = launch(tiny_spec, None, said=said, trials=2, objectives=["val_loss", "n_params"], pruner="median", sampler="nsga2")
    assert sum("pruning is off" in m for m in said) == 1
    for t in result.study.get_trials():
        assert t.state == TrialState.COMPLETE and len(t.values) == 2 and t.intermediate_values == {}
        assert t.values[1] == t.user_attrs["n_params"]


def test_enqueued_configurations_run_first(workdir: Path, tiny_spec: Any) -> None:
    result = launch(tiny_spec, scripted(lambda n: [1.0]), trials=3, enqueue=[{"lr": 0.0123}, {"lr": 0.2}])
    trials = result.study.get_trials()
    assert [t.params["lr"] for t in trials[:2]] == [0.0123, 0.2]


def test_launch_again_same_spec_continues_other_spec_refused(workdir: Path, tiny_spec: Any) -> None:
    launch(tiny_spec, scripted(lambda n: [1.0]), trials=2)
    again = launch(tiny_spec, scripted(lambda n: [1.0]), trials=3)  # same spec, more trials: continues
    assert sum(is_counted(t) for t in again.study.get_trials()) == 3
    with pytest.raises(SpecError, match="already exists with a different seed"):
        launch(tiny_spec, scripted(lambda n: [1.0]), trials=3, seed=5)


def test_in_process_executor_default_runs_the_real_trainer(workdir: Path, tiny_spec: Any) -> None:
    spec = parse_spec(tiny_spec())
    prep = prepare(spec)
    events = list(trial_events(7, prep.space.suggest(optuna.create_study().ask(), n_inputs=6, n_classes=3), prep.data))
    assert [type(e) for e in events] == [Started, Epoch, Epoch, Epoch, Ended] and {e.number for e in events} == {7}
    end = events[-1]
    assert isinstance(end, Ended) and end.reason == "completed" and end.stopped_epoch == 3


# -- issue 14: MLflow tells the truth, whatever happens to its writer ----------------------------
def writer_pids() -> list[int]:
    """The live MLflow writer processes of this test process (``python -m study.stores.writer``)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmd = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z" and b"study.stores.writer" in cmd:
            out.append(int(stat.parent.name))
    return out


def slow(curves: Callable[[int], list[float]], epoch_seconds: float) -> Callable[..., Iterator[Any]]:
    """`scripted` trials whose epochs take `epoch_seconds` each."""
    inner = scripted(curves)

    def fn(number: int, config: Any, data: Any) -> Iterator[Any]:
        for event in inner(number, config, data):
            if isinstance(event, Epoch):
                time.sleep(epoch_seconds)
                event = Epoch(event.number, event.epoch, event.metrics)  # stamped when the epoch finished
            yield event

    return fn


class StallWriter(Listener):
    """SIGSTOPs the MLflow writer for `seconds` when trial 0 starts: a writer far behind."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_trial_start(self, number: int, info: dict[str, Any]) -> None:
        if number == 0:
            (pid,) = writer_pids()
            os.kill(pid, signal.SIGSTOP)
            threading.Timer(self.seconds, os.kill, (pid, signal.SIGCONT)).start()


def test_mlflow_times_are_when_trials_ran_even_with_a_stalled_writer(workdir: Path, tiny_spec: Any) -> None:
    result = launch(tiny_spec, slow(lambda n: [1.0, 0.8, 0.6], 0.2), listener=StallWriter(3.0), trials=4, inline=False)
    parent, children, client = mlflow_runs(workdir)
    trials = result.study.get_trials()
    for t in trials:
        run, start, end = children[t.number], t.datetime_start.timestamp(), t.datetime_complete.timestamp()
        assert abs(run.info.start_time / 1000 - start) < 1.0, (t.number, run.info.start_time / 1000 - start)
        assert abs(run.info.end_time / 1000 - end) < 1.0, (t.number, run.info.end_time / 1000 - end)
        stamps = [
            m.timestamp / 1000 for m in sorted(client.get_metric_history(run.info.run_id, "val_loss"), key=lambda m: m.step)
        ]
        assert len(stamps) == 3 and stamps == sorted(stamps) and start <= stamps[0] and stamps[-1] <= end
        assert stamps[1] - stamps[0] >= 0.15  # each point when its epoch finished, not when the writer got to it
    first = min(t.datetime_start.timestamp() for t in trials)
    last = max(t.datetime_complete.timestamp() for t in trials)
    # MLflow keeps whole milliseconds
    assert first - 5 < parent.info.start_time / 1000 <= first and int(last * 1000) <= parent.info.end_time < (last + 5) * 1000


def test_parent_figures_after_resume_are_the_studys_and_read_left_to_right(workdir: Path, tiny_spec: Any) -> None:
    launch(tiny_spec, scripted(lambda n: [1.0, 0.2] if n == 0 else [1.0, 0.9]), trials=3, inline=False, sampler="random")
    second = launch(tiny_spec, scripted(lambda n: [1.0, 0.5]), resume=True, trials=5, inline=False, sampler="random")
    study = second.study
    parent, _, client = mlflow_runs(workdir)
    last = {}
    for key in ("finished", "completed", "pruned", "failed", "best_value"):
        history = client.get_metric_history(parent.info.run_id, key)
        steps = [m.step for m in sorted(history, key=lambda m: (m.timestamp, m.step))]
        assert steps == sorted(steps) and steps[-1] == 5, (key, steps)  # logged in order, the summary last
        last[key] = max(history, key=lambda m: (m.step, m.timestamp)).value
    assert last["best_value"] == study.best_value == 0.2  # the first run's best
    assert last["completed"] == len(study.get_trials(states=[TrialState.COMPLETE])) == 5
    assert last["finished"] == 5 and last["failed"] == 0 and last["pruned"] == 0


class KillWriter(Listener):
    """SIGKILLs the current MLflow writer at the end of each trial in `at`; when no writer is
    alive then (the driver replaces a dead one at its next write, and two trials can end
    before it writes), at the next trial end that finds one. It never waits for a writer:
    it runs on the driver's thread, which is the one that would start it."""

    def __init__(self, *at: int) -> None:
        self.at = set(at)
        self.ended = 0
        self.pending = 0
        self.killed: set[int] = set()

    def on_trial_end(self, number: int, outcome: Any, snapshot: Any) -> None:
        self.ended += 1
        self.pending += self.ended in self.at
        live = set(writer_pids()) - self.killed
        if self.pending and live:
            for pid in live:
                os.kill(pid, signal.SIGKILL)
            self.killed |= live
            self.pending -= 1
            deadline = time.monotonic() + 10
            while live & set(writer_pids()) and time.monotonic() < deadline:  # dead before the driver's next write
                time.sleep(0.01)


def test_a_killed_writer_is_replaced_and_mlflow_repaired_at_the_end(
    workdir: Path, tiny_spec: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    said: list[str] = []
    result = launch(tiny_spec, listener=KillWriter(1), trials=5, inline=False, said=said, sampler="random")  # the real trainer
    assert result.finished and result.succeeded == 5
    (died,) = [m for m in said if "writer process stopped" in m]
    assert "killed by SIGKILL" in died and "a new one took over" in died
    assert result.mlflow_lost >= 1 and result.mlflow_complete
    assert sum(m.startswith("MLflow missed writes during the study; filled in from Optuna") for m in said) == 1
    assert "Traceback" not in capfd.readouterr().err
    parent, children, client = mlflow_runs(workdir)
    assert parent.info.status == "FINISHED"
    assert_agree(result.study, children)
    best = result.study.best_trial.number  # its weights too, even if the dead writer had them
    assert [a.path for a in client.list_artifacts(children[best].info.run_id, "weights")] == ["weights/weights.npz"]


def test_without_a_writer_the_study_finishes_and_says_how_to_fill_mlflow_in(
    workdir: Path, tiny_spec: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    from study.run.reconcile import sync
    from study.stores.writer import MAX_RESTARTS

    said: list[str] = []
    killer = KillWriter(*range(1, MAX_RESTARTS + 2))  # the first writer and every one that replaces it
    fn = slow(lambda n: [1.0, 0.9, 0.8], 0.05)
    result = launch(tiny_spec, fn, listener=killer, trials=8, inline=False, said=said, sampler="random")
    assert killer.pending == 0 and result.finished and result.succeeded == 8  # every trial ran to its end
    assert len([m for m in said if "writer process stopped" in m]) == MAX_RESTARTS + 1
    assert sum("goes on without MLflow" in m for m in said) == 1
    assert not result.mlflow_complete and sum("sync tiny-study" in m and "missed" in m for m in said) == 1
    assert "Traceback" not in capfd.readouterr().err
    spec = tiny_spec()
    sync("tiny-study", spec["storage"], spec["tracking_uri"])
    parent, children, _ = mlflow_runs(workdir)
    assert parent.info.status == "FINISHED"
    assert_agree(result.study, children)


@pytest.mark.integration
def test_a_locked_mlflow_store_is_waited_for_with_one_warning(
    workdir: Path, tiny_spec: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    """Another process holds the SQLite store's write lock from the end of the first trial
    until a write has failed on it (MLflow waits 20 s for a lock before it fails), and 2 s
    more: the writes are retried, one warning line, nothing lost, nothing stops."""
    import sqlite3

    said: list[str] = []

    class Lock(Listener):
        def on_trial_end(self, number: int, outcome: Any, snapshot: Any) -> None:
            if snapshot.finished == 1:
                held = threading.Event()
                threading.Thread(target=self.hold, args=(held,), daemon=True).start()
                held.wait(30)

        def hold(self, held: threading.Event) -> None:
            db = sqlite3.connect(workdir / "mlflow.db", isolation_level=None, timeout=30)
            db.execute("BEGIN EXCLUSIVE")
            held.set()
            deadline = time.monotonic() + 90
            while not any("retrying" in m for m in said) and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(2)
            db.execute("COMMIT")
            db.close()

    result = launch(tiny_spec, slow(lambda n: [1.0, 0.9], 0.05), listener=Lock(), trials=4, inline=False, said=said)
    assert result.finished and result.succeeded == 4
    (warning,) = said
    assert warning.startswith("warning: MLflow") and "database is locked" in warning and "retrying" in warning
    assert result.mlflow_lost == 0 and result.mlflow_complete
    assert "Traceback" not in capfd.readouterr().err
    parent, children, _ = mlflow_runs(workdir)
    assert parent.info.status == "FINISHED"
    assert_agree(result.study, children)


def test_nothing_is_written_outside_the_stores(workdir: Path, tiny_spec: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    launch(tiny_spec, scripted(lambda n: [1.0, 0.5]), trials=2, inline=False)
    assert list(elsewhere.iterdir()) == []  # no ./mlruns
    parent, _, client = mlflow_runs(workdir)
    assert parent.info.artifact_uri.startswith((workdir / "mlartifacts" / "tiny-study").as_uri())
    assert [a.path for a in client.list_artifacts(parent.info.run_id)] == ["spec.yaml"]
    assert client.get_experiment_by_name("tiny-study").tags["mlflow.experimentKind"] == "custom_model_development"


def test_the_best_trials_weights_are_an_artifact_that_reproduces_it(workdir: Path, tiny_spec: Any, tmp_path: Path) -> None:
    from study.run.worker import init_params, load_weights
    from trainers.numpy_mlp.trainer import NumpyBackend

    result = launch(tiny_spec, trials=3, seed=3, inline=False)
    best = result.study.best_trial
    _, children, client = mlflow_runs(workdir)
    with_weights = [n for n, run in children.items() if client.list_artifacts(run.info.run_id, "weights")]
    assert best.number in with_weights
    assert all(result.study.trials[n].value >= best.value for n in with_weights)  # each was the best when it ended
    path = client.download_artifacts(children[best.number].info.run_id, "weights/weights.npz", str(tmp_path))
    config = TrialRecord.of(best).config
    data = prepare(parse_spec(tiny_spec())).data
    model = NumpyBackend(config, data, init_params(load_weights(path)))
    val_loss, _, _ = model.evaluate("val")
    assert val_loss == pytest.approx(best.value, rel=1e-5)  # the kept (best-epoch) weights


def test_a_time_budget_ends_the_run_with_a_clear_line(workdir: Path, tiny_spec: Any) -> None:
    said: list[str] = []
    result = launch(tiny_spec, slow(lambda n: [1.0, 0.9, 0.8], 0.1), trials=40, time_budget="1s", said=said)
    assert result.finished and result.budget_reached
    n = sum(is_counted(t) for t in result.study.get_trials())
    assert 1 <= n < 40 and not [t for t in result.study.get_trials() if t.state == TrialState.RUNNING]
    (line,) = [m for m in said if m.startswith("time budget")]
    assert line.startswith(f"time budget of 1s reached: no trial started after it, the trials running then finished; {n} of 40")
    assert line.endswith("resume tiny-study")
    parent, children, _ = mlflow_runs(workdir)
    assert parent.info.status == "FINISHED"
    assert_agree(result.study, children)


def test_a_study_without_a_successful_trial_names_its_most_common_error(workdir: Path, tiny_spec: Any) -> None:
    from study.cli.runs import no_success

    def fn(number: int, config: Any, data: Any) -> Iterator[Any]:
        yield Started(number, {"pid": 0})
        yield Failed(number, f"ValueError: no GPU (in epoch {number + 1})" if number != 1 else "KeyError: 'x'")

    result = launch(tiny_spec, fn, trials=3)
    assert result.finished and result.succeeded == 0
    assert result.common_error() == ("ValueError: no GPU", 2)  # the epoch in parentheses does not split them
    assert no_success(result, parse_spec(tiny_spec())) == (
        "no trial of study 'tiny-study' succeeded (3 finished, all failed); most common error (2 of 3): ValueError: no GPU"
    )


def test_the_executor_is_warmed_for_the_first_trials_before_the_study_opens(workdir: Path, tiny_spec: Any) -> None:
    """`run_study` asks an executor that can (`warm`: Ray's trial slots) to start what the
    first trials need before it opens the study and its MLflow writer, once, for the study's
    concurrency (or its trials, when fewer)."""
    calls: list[tuple[str, Any]] = []

    class Warmed(InProcessExecutor):
        def warm(self, concurrency: int) -> None:
            calls.append(("warm", concurrency))

        def submit(self, number: int, config: Any, params: Any = None) -> None:
            calls.append(("submit", number))
            super().submit(number, config, params)

    opened = launching.open_study

    def open_study(prep: Prepared, *, resume: bool) -> Any:
        calls.append(("open", None))
        return opened(prep, resume=resume)

    def make(prep: Prepared) -> tuple[InProcessExecutor, Callable[[], None]]:
        ex = Warmed(prep.data, slots=2)
        return ex, ex.close

    for trials, concurrency, warmed in ((4, 2, 2), (1, 2, 1)):
        calls.clear()
        spec = parse_spec(tiny_spec(name=f"warm-{trials}", trials=trials, concurrency=concurrency))
        try:
            launching.open_study = open_study
            result = launching.run_study(prepare(spec), executor=make, say=lambda m: None, inline_tracking=True)
        finally:
            launching.open_study = opened
        assert result.finished
        assert calls[:2] == [("warm", warmed), ("open", None)]
        assert [c for c in calls if c[0] == "warm"] == [("warm", warmed)]
        assert sum(c[0] == "submit" for c in calls) == trials

"""The names hpstudy writes to MLflow, in a module without imports: the MLflow writer process
(`study.stores.writer`) needs them and nothing else of `study.record`, whose typed view of a
trial brings Optuna, the spec and the trainers (about a third of a second of CPU per
process). `study.record` re-exports them; it is the schema's one place."""

from __future__ import annotations


class Tag:
    """MLflow tags (runs) and the experiment tag."""

    PARENT = "mlflow.parentRunId"
    TRIAL_NUMBER = "trial_number"
    STATE = "state"  # the Optuna state name
    STOP_REASON = "stop_reason"  # also the Optuna trial user attr (`study.record.TrialAttr`)
    ROLE = "hpstudy.role"  # "study" on the parent run
    STUDY_UID = "hpstudy.study_uid"
    STUDY = "hpstudy.study"  # on the experiment: the study's name
    SYNCED = "hpstudy.synced"  # "true": written by a reconciliation from Optuna, not live
    INCOMPLETE = "hpstudy.incomplete"  # "true": some writes of this run were lost; repair it
    RESUMED_AT = "resumed_at"
    EXPERIMENT_KIND = "mlflow.experimentKind"  # on the experiment: the MLflow UI opens its runs view
    KIND_TRAINING = "custom_model_development"  # its value for a study (not a GenAI experiment)
    VERDICT = "verdict"  # on a comparison's parent run: supported, contradicted or inconclusive
    EFFECT = "effect"  # the headline effect, its interval: ci_low, ci_high
    CI_LOW = "ci_low"
    CI_HIGH = "ci_high"
    NOTE = "mlflow.note.content"  # the run's description in the MLflow UI: the verdict in a sentence
    CONFIRMATION = "hpstudy.confirmation"  # + ".<confirmation study>" on the confirmed study's parent: its outcome


#: The verdict's artifact on the parent run.
VERDICT_FILE = "verdict.json"

#: MLflow tag and param values are cut to this length.
MAX_TEXT = 4000

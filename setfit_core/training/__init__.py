"""The SetFit algorithm: pair sampling and batches, phase 1 (contrastive body training) and phase 2 (the
head). How a step is computed fast is `setfit_core.engine`'s business; the losses are `setfit_core.losses`.

- sampling.py: setfit's pairs (index arrays, drawn lazily) and label-grouped batches.
- batches.py: the step stream of a run, and the `fast` preset's length.
- embedding_phase.py: `train_body`, the phase-1 loop.
- embedding_eval.py: evaluation, logging and checkpoints during phase 1.
- classifier_phase.py: fitting the scikit-learn or differentiable head, optionally end to end.
- hyperparameter_search.py: `Trainer.hyperparameter_search` (optuna), each trained body reused across trials.
"""

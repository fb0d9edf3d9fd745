from __future__ import annotations

import json

import pytest

from setfit_core import BatchCosineSimilarityLoss, CosineSimilarityLoss, SupConLoss, TrainingArguments


def test_defaults_match_setfit_1_2():
    args = TrainingArguments()
    assert args.batch_size == (16, 2)
    assert args.num_epochs == (1, 16)
    assert args.body_learning_rate == (2e-5, 1e-5)
    assert args.head_learning_rate == 1e-2
    assert args.end_to_end is False
    assert args.loss is CosineSimilarityLoss
    assert args.num_iterations is None
    assert args.sampling_strategy == "oversampling"
    assert args.max_steps == -1
    assert args.margin == 0.25
    assert args.distance_metric == "cosine_distance"
    assert args.warmup_proportion == 0.1
    assert args.l2_weight == 0.01
    assert args.max_length is None
    assert args.use_amp is False
    assert args.seed == 42
    assert args.show_progress_bar is True
    assert (args.logging_strategy, args.eval_strategy, args.save_strategy) == ("steps", "no", "steps")


def test_phase_properties():
    args = TrainingArguments(batch_size=(8, 4), num_epochs=(2, 3), body_learning_rate=(3e-5, 1e-6))
    assert (args.embedding_batch_size, args.classifier_batch_size) == (8, 4)
    assert (args.embedding_num_epochs, args.classifier_num_epochs) == (2, 3)
    assert (args.body_embedding_learning_rate, args.body_classifier_learning_rate) == (3e-5, 1e-6)


def test_scalar_fills_both_phases_including_int_learning_rate():
    args = TrainingArguments(batch_size=32, num_epochs=2, body_learning_rate=1)
    assert args.batch_size == (32, 32)
    assert args.num_epochs == (2, 2)
    assert args.body_learning_rate == (1.0, 1.0)  # setfit 1.2.0 leaves an int unexpanded


def test_l2_weight_zero_is_kept():
    assert TrainingArguments(l2_weight=0).l2_weight == 0  # setfit 1.2.0 turns 0 into 0.01
    assert TrainingArguments(l2_weight=None).l2_weight == 0.01


def test_json_lists_become_tuples():
    args = TrainingArguments(batch_size=[16, 4])
    assert args.batch_size == (16, 4)


def test_round_trip_through_json():
    args = TrainingArguments(batch_size=(16, 2), loss=SupConLoss, end_to_end=True, seed=7, num_iterations=5)
    data = json.loads(json.dumps(args.to_dict()))
    assert data["loss"] == "SupConLoss"
    again = TrainingArguments.from_dict(data)
    assert again == args
    assert again.loss is SupConLoss


def test_loss_by_name_and_sentence_transformers_class():
    from sentence_transformers.sentence_transformer import losses as st_losses

    assert TrainingArguments(loss="SupConLoss").loss is SupConLoss
    assert TrainingArguments(loss=st_losses.CosineSimilarityLoss).loss is CosineSimilarityLoss


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, r"'batch_size' must be positive ints.*got 0"),
        ({"batch_size": (16, 2, 3)}, r"'batch_size' must be a single value or a \(embedding_phase, classifier_phase\)"),
        ({"num_epochs": 1.5}, r"'num_epochs' must be positive ints"),
        ({"body_learning_rate": -1e-5}, r"'body_learning_rate' must be positive numbers"),
        ({"head_learning_rate": 0}, r"'head_learning_rate' must be a positive number; got 0"),
        ({"warmup_proportion": 1.5}, r"'warmup_proportion' must be a number in \[0, 1\]; got 1.5"),
        ({"l2_weight": -0.1}, r"'l2_weight' must be a number >= 0"),
        ({"sampling_strategy": "random"}, r"'sampling_strategy' must be one of \['oversampling', "
                                          r"'undersampling', 'unique', 'label_balanced'\]; got 'random'"),
        ({"num_iterations": 0}, r"'num_iterations' must be None or a positive int; got 0"),
        ({"max_steps": 0}, r"'max_steps' must be -1 \(no limit\) or a positive int; got 0"),
        ({"max_length": 0}, r"'max_length' must be None"),
        ({"seed": -1}, r"'seed' must be an int in \[0, 2\*\*32\); got -1"),
        ({"distance_metric": "cosine"}, r"'distance_metric' must be one of"),
        ({"eval_strategy": "sometimes"}, r"'eval_strategy' must be one of \['no', 'steps', 'epoch'\]"),
        ({"end_to_end": "yes"}, r"'end_to_end' must be True or False; got 'yes'"),
        ({"loss": "CosineLoss"}, r"loss 'CosineLoss' is not a supported loss; did you mean 'CosineSimilarityLoss'"),
    ],
)
def test_bad_values_name_the_field_value_and_constraint(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainingArguments(**kwargs)


def test_unknown_field_names_the_closest():
    with pytest.raises(ValueError, match=r"'num_iteration' is not a TrainingArguments field; did you mean "
                                         r"'num_iterations'\?"):
        TrainingArguments.from_dict({"num_iteration": 20})


def test_eval_steps_imply_step_evaluation():
    args = TrainingArguments(eval_steps=5)
    assert args.eval_strategy == "steps"


def test_fast_preset_fills_fields_left_at_setfit_defaults():
    args = TrainingArguments(preset="fast")
    assert args.loss is SupConLoss and args.loss_params == {"temperature": 0.05, "base_temperature": 0.05}
    assert args.embedding_batch_size == 256 and args.body_embedding_learning_rate == 5e-5
    mine = TrainingArguments(preset="fast", batch_size=(32, 4), body_learning_rate=1e-5)
    assert mine.batch_size == (32, 4) and mine.body_learning_rate == (1e-5, 1e-5)
    assert TrainingArguments.from_dict(args.to_dict()) == args
    # The temperature belongs to SupCon: another loss the caller chose keeps its own defaults.
    other = TrainingArguments(preset="fast", loss=BatchCosineSimilarityLoss)
    assert other.loss is BatchCosineSimilarityLoss and other.loss_params is None
    assert other.sampling_strategy == "label_balanced"


def test_unknown_preset_and_bad_loss_params():
    with pytest.raises(ValueError, match=r"'preset' must be one of \[None, 'fast'\]; got 'quick'"):
        TrainingArguments(preset="quick")
    with pytest.raises(ValueError, match=r"'loss_params' must be None or a dict"):
        TrainingArguments(loss_params=3)


def test_label_balanced_sampling_needs_a_group_loss():
    with pytest.raises(ValueError, match=r"'sampling_strategy' 'label_balanced' makes in-batch batches for a "
                                         r"group loss"):
        TrainingArguments(sampling_strategy="label_balanced")
    assert TrainingArguments(preset="fast").sampling_strategy == "label_balanced"
    assert TrainingArguments(preset="fast").preset is None  # expanded into the fields above


# ---- distance_metric as setfit writes it: sentence-transformers' functions ----------------------------


def test_sentence_transformers_distance_functions_become_names():
    from sentence_transformers.sentence_transformer import losses

    Pairwise, Paired = losses.BatchHardTripletLossDistanceFunction, losses.SiameseDistanceMetric

    expected = {Pairwise.cosine_distance: "cosine_distance", Pairwise.euclidean_distance: "euclidean",
                Pairwise.eucledian_distance: "euclidean", Paired.COSINE_DISTANCE: "cosine_distance",
                Paired.EUCLIDEAN: "euclidean", Paired.MANHATTAN: "manhattan"}
    for function, name in expected.items():
        args = TrainingArguments(loss="BatchHardTripletLoss", distance_metric=function)
        assert args.distance_metric == name  # config holds the name: it hashes and round-trips
        assert TrainingArguments.from_dict(json.loads(args.to_json())) == args


def test_an_unknown_distance_function_is_named_with_the_accepted_ones():
    def cosine_distance(embeddings):  # the same __name__ as sentence-transformers' function, but not it
        return embeddings

    with pytest.raises(ValueError, match=r"distance_metric must be one of \['cosine_distance', 'euclidean', "
                                         r"'manhattan'\] or one of sentence-transformers' distance functions "
                                         r"\(BatchHardTripletLossDistanceFunction.cosine_distance, .*"
                                         r"SiameseDistanceMetric.MANHATTAN\); got the function "
                                         r".*test_an_unknown_distance_function_is_named.*cosine_distance"):
        TrainingArguments(distance_metric=cosine_distance)


# ---- to_json_string / to_sanitized_dict (setfit's, read by transformers' callbacks) ---------------------


def test_to_json_string_is_indented_json_of_to_dict():
    args = TrainingArguments(batch_size=(8, 4), loss=SupConLoss)
    text = args.to_json_string()
    assert json.loads(text) == args.to_dict()
    assert text.startswith('{\n  "output_dir": "checkpoints",')  # fields in order, indented by 2, as setfit's


def test_to_sanitized_dict_keeps_scalars_and_writes_the_rest_as_str():
    sanitized = TrainingArguments(batch_size=(8, 4), loss=SupConLoss).to_sanitized_dict()
    assert set(sanitized) == set(TrainingArguments().to_dict()) | {"train_batch_size", "eval_batch_size"}
    assert (sanitized["train_batch_size"], sanitized["eval_batch_size"]) == (8, 8)  # setfit's: the embedding phase
    assert sanitized["batch_size"] == "(8, 4)" and sanitized["num_iterations"] == "None"  # str(), as setfit
    assert (sanitized["loss"], sanitized["seed"], sanitized["use_amp"]) == ("SupConLoss", 42, False)
    assert all(type(v) in (bool, int, float, str) for v in sanitized.values())

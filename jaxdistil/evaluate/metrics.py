"""Downstream metrics: token accuracy, entity-level P/R/F1 (seqeval), sub-word-token P/R/F1, accuracy, macro-F1.

Sequences are lists of per-word tag strings, gold and predicted of equal lengths; the
alignment module maps sub-token predictions back to words before they arrive here.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Literal

import numpy as np

TagScheme = Literal["iob1", "iob2"]


def _split_tag(tag: str) -> tuple[str, str]:
    """('B', 'PER') for 'B-PER', ('O', '') for 'O'; a bare type such as 'PER' reads as 'I-PER'."""
    if tag == "O":
        return "O", ""
    prefix, sep, entity_type = tag.partition("-")
    if sep and prefix in ("B", "I"):
        return prefix, entity_type
    return "I", tag


def iob1_to_iob2(tags: Sequence[str]) -> list[str]:
    """Rewrite IOB1 tags as IOB2, where every entity starts with `B-`.

    In IOB1 an `I-X` starts an entity unless the previous tag is `I-X` or `B-X` (same type);
    `B-X` only appears to separate two adjacent entities of type X, so it is already a start.
    """
    converted = []
    previous_type = ""  # entity type of the previous tag; "" after O or at the start
    for tag in tags:
        prefix, entity_type = _split_tag(tag)
        if prefix == "O":
            converted.append("O")
            previous_type = ""
            continue
        starts_entity = prefix == "B" or entity_type != previous_type
        converted.append(("B-" if starts_entity else "I-") + entity_type)
        previous_type = entity_type
    return converted


def _check_same_shape(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> None:
    """Metrics over misaligned sequences are silently wrong, so refuse them loudly."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sequences but {len(pred)} predicted ones")
    for index, (gold_tags, pred_tags) in enumerate(zip(gold, pred, strict=True)):
        if len(gold_tags) != len(pred_tags):
            raise ValueError(f"sequence {index}: {len(gold_tags)} gold tags but {len(pred_tags)} predicted")


def token_accuracy(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> float:
    """Fraction of words whose predicted tag equals the gold tag (the POS-tagging metric)."""
    _check_same_shape(gold, pred)
    total = sum(len(tags) for tags in gold)
    if total == 0:
        raise ValueError("no words to score")
    correct = sum(
        g == p
        for gold_tags, pred_tags in zip(gold, pred, strict=True)
        for g, p in zip(gold_tags, pred_tags, strict=True)
    )
    return correct / total


def entity_scores(
    gold: Sequence[Sequence[str]],
    pred: Sequence[Sequence[str]],
    scheme: TagScheme = "iob2",
) -> dict[str, float]:
    """Entity-level micro precision/recall/F1, as seqeval (conlleval rules) computes them.

    With scheme="iob1" both sides are converted to IOB2 first, so an entity that starts with
    `I-` and two adjacent same-type entities split by `B-` are read as IOB1 means them.
    """
    # Lazy: seqeval imports scikit-learn (seconds), which only NER scoring needs.
    from seqeval.metrics import f1_score, precision_score, recall_score

    _check_same_shape(gold, pred)
    if scheme == "iob1":
        gold = [iob1_to_iob2(tags) for tags in gold]
        pred = [iob1_to_iob2(tags) for tags in pred]
    elif scheme != "iob2":
        raise ValueError(f"unknown tag scheme {scheme!r}; expected 'iob1' or 'iob2'")
    gold_lists = [list(tags) for tags in gold]
    pred_lists = [list(tags) for tags in pred]
    return {
        "precision": float(precision_score(gold_lists, pred_lists, zero_division=0)),
        "recall": float(recall_score(gold_lists, pred_lists, zero_division=0)),
        "f1": float(f1_score(gold_lists, pred_lists, zero_division=0)),
    }


def accuracy(gold: Sequence[Hashable], pred: Sequence[Hashable]) -> float:
    """Fraction of examples whose predicted label equals the gold one."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predicted ones")
    if len(gold) == 0:
        raise ValueError("no examples to score")
    return float(np.mean(np.asarray(gold, dtype=object) == np.asarray(pred, dtype=object)))


def _per_class_counts(
    gold: Sequence[Hashable], pred: Sequence[Hashable], classes: Sequence[Hashable] | None, unit: str
) -> list[tuple[int, int, int]]:
    """(true positives, predicted, gold) per class; classes default to the union of gold and predicted."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold {unit} but {len(pred)} predicted ones")
    if len(gold) == 0:
        raise ValueError(f"no {unit} to score")
    gold_array = np.asarray(gold, dtype=object)
    pred_array = np.asarray(pred, dtype=object)
    counts = []
    for label in list(classes) if classes is not None else list(dict.fromkeys([*gold, *pred])):
        is_gold = gold_array == label
        is_pred = pred_array == label
        counts.append((int(np.sum(is_gold & is_pred)), int(np.sum(is_pred)), int(np.sum(is_gold))))
    return counts


def macro_f1(
    gold: Sequence[Hashable], pred: Sequence[Hashable], labels: Sequence[Hashable] | None = None
) -> float:
    """Unweighted mean of per-class F1 = 2TP / (2TP + FP + FN), as sklearn's average="macro".

    Classes default to the union of gold and predicted labels; a class with no gold and no
    predicted example scores 0 (sklearn's zero_division=0), so listing unused labels lowers it.
    """
    counts = _per_class_counts(gold, pred, labels, "labels")
    # 2TP + FP + FN = predicted + gold
    return float(np.mean([2 * tp / (n_pred + n_gold) if n_pred + n_gold else 0.0 for tp, n_pred, n_gold in counts]))


def subword_token_scores(gold: Sequence[str], pred: Sequence[str]) -> dict[str, float]:
    """Precision/recall/F1 counted per sub-word token, as the DistilCamemBERT NER card reports them.

    `gold`/`pred` hold one label per sub-word token (each sub-token carries its word's tag).
    Per class c: P = TP/(TP+FP), R = TP/(TP+FN), F1 = 2PR/(P+R) (0 when undefined); the card's
    global row is the support-weighted mean over every class, `O` included (its support column
    sums to all sub-words), i.e. sklearn's classification_report "weighted avg". Tags are
    compared as strings, so IOB prefixes count: `B-PER` predicted for `I-PER` is an error.
    """
    totals = {"subword_precision": 0.0, "subword_recall": 0.0, "subword_f1": 0.0}
    for tp, n_pred, n_gold in _per_class_counts(gold, pred, list(dict.fromkeys(gold)), "sub-tokens"):
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_gold
        weight = n_gold / len(gold)
        totals["subword_precision"] += weight * precision
        totals["subword_recall"] += weight * recall
        totals["subword_f1"] += weight * (2 * precision * recall / (precision + recall) if tp else 0.0)
    return totals

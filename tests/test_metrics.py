import math

import pytest

from tailor.evaluate.metrics import (
    average_ranks,
    bleu,
    classification_metrics,
    exact_match,
    generation_metrics,
    normalize_answer,
    perplexity,
    regression_metrics,
    rouge_l,
    sentence_bleu,
    token_f1,
)

approx = pytest.approx


def test_classification_three_classes_by_hand():
    # refs  a a a b b c        confusion (rows = reference, cols = prediction)
    # preds a a b b b b          a: [2, 1, 0]   b: [0, 2, 0]   c: [0, 1, 0]
    # precision a 2/2, b 2/4, c 0/0 -> 0;  recall a 2/3, b 2/2, c 0/1
    # f1 a 4/5, b 2/3, c 0;  support 3, 2, 1
    m = classification_metrics([0, 0, 1, 1, 1, 1], [0, 0, 0, 1, 1, 2], ["a", "b", "c"])
    assert m["confusion"] == [[2, 1, 0], [0, 2, 0], [0, 1, 0]]
    assert m["accuracy"] == approx(4 / 6)
    assert m["per_class"]["a"] == approx(
        {"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3}
    )
    assert m["per_class"]["b"] == approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 2}
    )
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["macro_precision"] == approx(0.5)
    assert m["macro_recall"] == approx(5 / 9)
    assert m["macro_f1"] == approx(22 / 45)
    assert m["weighted_f1"] == approx((3 * 0.8 + 2 * 2 / 3) / 6)
    # single-label, every prediction valid: micro P = R = F1 = accuracy
    assert m["micro_precision"] == m["micro_recall"] == m["micro_f1"] == approx(4 / 6)


def test_classification_invalid_prediction_is_wrong_and_no_class():
    m = classification_metrics([0, -1], [0, 1], ["neg", "pos"])
    assert m["confusion"] == [[1, 0], [0, 0]]
    assert m["accuracy"] == 0.5
    assert m["micro_precision"] == 1.0  # one valid prediction, correct
    assert m["micro_recall"] == 0.5
    assert m["per_class"]["pos"]["support"] == 1


def test_classification_rejects_bad_input():
    with pytest.raises(ValueError, match="2 predictions but 1"):
        classification_metrics([0, 1], [0], ["a", "b"])
    with pytest.raises(ValueError, match="outside 0..1"):
        classification_metrics([0], [2], ["a", "b"])
    assert classification_metrics([], [], ["a", "b"])["accuracy"] == 0.0


def test_regression_by_hand():
    m = regression_metrics([1, 2, 3, 4], [1, 2, 3, 5])
    assert m["mse"] == approx(0.25)
    assert m["rmse"] == approx(0.5)
    assert m["mae"] == approx(0.25)
    # x - mean = [-1.5, -.5, .5, 1.5], y - mean = [-1.75, -.75, .25, 2.25]: 6.5 / sqrt(5 * 8.75)
    assert m["pearson"] == approx(6.5 / math.sqrt(43.75))
    assert m["spearman"] == approx(1.0)  # monotonic, so the ranks agree exactly


def test_spearman_is_pearson_on_average_ranks():
    assert average_ranks([10, 20, 20, 30]).tolist() == [1.0, 2.5, 2.5, 4.0]
    assert average_ranks([3, 1, 3, 3]).tolist() == [3.0, 1.0, 3.0, 3.0]
    x, y = [1, 2, 2, 3], [7, 8, 9, 10]
    ranked = regression_metrics(average_ranks(x), average_ranks(y))
    assert regression_metrics(x, y)["spearman"] == approx(ranked["pearson"])
    # ranks x [1, 2.5, 2.5, 4], y [1, 2, 3, 4]: 4.5 / sqrt(4.5 * 5)
    assert regression_metrics(x, y)["spearman"] == approx(4.5 / math.sqrt(22.5))
    assert regression_metrics([1, 2, 3], [3, 2, 1])["spearman"] == approx(-1.0)


def test_constant_input_gives_zero_correlation_not_nan():
    m = regression_metrics([0.1, 0.1, 0.1], [1.0, 2.0, 3.0])
    assert m["pearson"] == 0.0 and m["spearman"] == 0.0
    assert regression_metrics([5.0], [4.0]) == approx(
        {"mse": 1.0, "rmse": 1.0, "mae": 1.0, "pearson": 0.0, "spearman": 0.0}
    )


def test_perplexity():
    assert perplexity(4 * math.log(5), 4) == approx(5.0)
    assert perplexity(0.0, 10) == 1.0
    assert math.isfinite(perplexity(700.0, 1))  # large but representable
    assert perplexity(1e6, 1) == float("inf")
    assert math.isnan(perplexity(0.0, 0))


def test_normalize_answer():
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert normalize_answer("An apple a day") == "apple day"
    assert normalize_answer("theater anthem") == "theater anthem"  # articles only as whole words
    assert normalize_answer("  \tU.S.A.\n") == "usa"


def test_exact_match_and_token_f1():
    assert exact_match("The Eiffel Tower.", ["eiffel tower"]) == 1.0
    assert exact_match("Eiffel", ["eiffel tower", "the tower"]) == 0.0
    assert exact_match("Paris", "paris") == 1.0  # a single reference may be a plain string
    # pred -> [cat, sat, on, mat], ref -> [cat, on, mat]: 3 shared, P 3/4, R 1, F1 6/7
    assert token_f1("the cat sat on the mat", ["dog", "a cat on a mat"]) == approx(6 / 7)
    assert token_f1("x y", ["z"]) == 0.0
    # "a" is an article: [b] vs [b, b] -> P 1, R 1/2
    assert token_f1("a a b", ["a b b"]) == approx(2 / 3)
    assert token_f1("b b b", ["b"]) == approx(0.5)  # overlap is clipped by counts: P 1/3, R 1


def test_unanswerable_questions():
    assert exact_match("", []) == 1.0 and token_f1("", []) == 1.0
    assert exact_match("the.", []) == 1.0  # normalises to empty
    assert exact_match("Paris", []) == 0.0 and token_f1("Paris", []) == 0.0


def test_rouge_l():
    # [cat, sat, on, mat] vs [cat, on, red, mat]: LCS cat-on-mat = 3, P = R = 3/4
    assert rouge_l("cat sat on mat", ["cat on the red mat"]) == approx(0.75)
    # LCS 3 of 6 and of 3: P 1/2, R 1 -> 2/3
    assert rouge_l("one two three four five six", "one three five") == approx(2 / 3)
    assert rouge_l("one three five", ["zzz", "one three five"]) == 1.0
    assert rouge_l("five three one", ["one three five"]) == approx(1 / 3)
    assert rouge_l("", []) == 1.0 and rouge_l("x", []) == 0.0


def test_bleu_hand_computed():
    # the cat sat on the mat  vs  the cat is on the mat (6 tokens each, brevity penalty 1)
    # 1-grams 5/6, 2-grams 3/5 (the cat, on the, the mat), 3-grams 1/4 (on the mat), 4-grams 0/3
    # unsmoothed: 0.  "exp" smoothing: p4 = 1 / (2 * 3); BLEU = (5/6 * 3/5 * 1/4 * 1/6) ** (1/4) = (1/48) ** (1/4)
    pred, ref = "the cat sat on the mat", "the cat is on the mat"
    assert bleu([pred], [[ref]], smooth=False) == 0.0
    assert bleu([pred], [[ref]]) == approx(100 * (1 / 48) ** 0.25)
    assert bleu([pred], [[ref]]) == approx(37.9918, abs=1e-3)
    # 2 tokens against 6: p1 = p2 = 1, brevity penalty exp(1 - 6/2)
    assert bleu(["the cat"], [["the cat sat on the mat"]], max_n=2) == approx(100 * math.exp(-2))
    assert bleu([pred], [[ref, pred]]) == approx(100.0)


def test_bleu_pools_counts_over_the_corpus():
    # unigrams: 2/2 + 3/3 matched; lengths 5 vs 2 + 4 = 6 -> 100 * exp(1 - 6/5)
    preds, refs = ["the cat", "a dog barks"], [["the cat"], ["a dog barks loudly"]]
    assert bleu(preds, refs, max_n=1) == approx(100 * math.exp(-0.2))
    # closest reference length, ties to the shorter: 3 tokens vs refs of 2 and 4 -> r = 2, no penalty
    assert bleu(["a b c"], [["a b", "a b c d"]], max_n=1) == approx(100.0)
    assert sentence_bleu("the cat", ["the cat"]) == approx(100.0)  # effective order 2
    assert bleu(["the cat"], [["the cat"]]) == 0.0  # corpus BLEU-4 of two tokens has no 3-grams


def test_generation_metrics():
    preds, refs = ["Paris", "the cat sat"], [["paris"], ["a cat sat down"]]
    m = generation_metrics(preds, refs)
    assert m["exact_match"] == approx(0.5)
    assert m["token_f1"] == approx((1 + 0.8) / 2)  # [cat, sat] vs [cat, sat, down]: P 1, R 2/3
    assert m["rouge_l"] == approx((1 + 0.8) / 2)
    assert m["bleu"] == approx(bleu(preds, refs))
    assert generation_metrics([], []) == {
        "exact_match": 0.0,
        "token_f1": 0.0,
        "rouge_l": 0.0,
        "bleu": 0.0,
    }

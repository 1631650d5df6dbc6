"""The matcher's logic on a tiny catalogue, with a bag-of-words encoder standing in for MiniLM."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipeline.catalogue import build_catalogue
from pipeline.document import Passage
from pipeline.match import (
    DECISION_FEATURES,
    NEGATION,
    PASSAGE_FEATURES,
    DecisionModel,
    DocumentPassages,
    EvidenceModel,
    IndicatorIndex,
    Matcher,
    decision_features,
    document_features,
    documents_features,
    evidence_specificity,
)
from pipeline.train import catalogue_rows
from tests.fakes import BagOfWordsEncoder

META = {"id": "t", "version": "1", "areas": {"CONF": "Confidentiality", "COMP": "Complaints"}}


def _ind(ind_id, area, title, words, elements):
    return {
        "id": ind_id,
        "area": area,
        "title": title,
        "must_say": f"The policy says {words[0]}.",
        "elements": [{"id": e, "text": f"{e} {w}", "exemplars": [f"we {w} always", f"staff {w}"]} for e, w in elements],
        "exemplars": [f"we {w} in every case" for w in words] + [f"our staff {w}" for w in words],
        "near_misses": [f"we do not {words[0]}"],
        "key_terms": [words[0]],
        "policy_types": ["confidentiality" if area == "CONF" else "complaints"],
        "level": "essential",
        "what_to_add": "Add it.",
    }


CATALOGUE = build_catalogue(
    META,
    [
        (
            "t",
            _ind(
                "CONF-01",
                "CONF",
                "Limits of confidentiality",
                ["disclose serious harm", "share court order", "break confidence danger"],
                [("situations", "serious harm danger"), ("authority", "manager authorises disclosure")],
            ),
        ),
        (
            "t",
            _ind(
                "COMP-04",
                "COMP",
                "Complaint stages",
                ["acknowledge complaint days", "investigate complaint weeks", "appeal complaint chair"],
                [("stages", "stage appeal chair"), ("timescales", "working days acknowledge")],
            ),
        ),
        (
            "t",
            _ind(
                "CONF-09",
                "CONF",
                "Retention",
                ["retain records years", "destroy records securely", "shred files schedule"],
                [("schedule", "retention schedule years"), ("disposal", "shred destroy securely")],
            ),
        ),
    ],
)


def _passages(texts, doc_id="d1"):
    out, pos = [], 0
    for k, text in enumerate(texts):
        out.append(Passage(doc_id=doc_id, index=k, text=text, start=pos, end=pos + len(text), section=[], pages=[]))
        pos += len(text) + 2
    return out


@pytest.fixture(scope="module")
def matcher():
    encoder = BagOfWordsEncoder()
    index = IndicatorIndex(CATALOGUE, encoder)
    X, y, w = catalogue_rows(index)
    evidence = EvidenceModel().fit(X, y, w)
    # decision rows: strong evidence -> met, some -> partial, none -> missing
    rng = np.random.default_rng(0)
    rows, labels = [], []
    for status, level in (("met", 0.9), ("partial", 0.55), ("missing", 0.05)):
        for _ in range(40):
            rows.append(np.clip(rng.normal(level, 0.05, len(DECISION_FEATURES)), 0, 1))
            labels.append(status)
    decision = DecisionModel(sorted(CATALOGUE.areas)).fit(np.array(rows), ["CONF"] * len(rows), labels)
    return Matcher(CATALOGUE, encoder, evidence, decision)


def test_catalogue_rows_are_labelled_by_owner(matcher) -> None:
    X, y, _ = catalogue_rows(matcher.index)
    assert X.shape[1] == len(PASSAGE_FEATURES)
    n_positive_sentences = len(matcher.index.ex_texts) + len(matcher.index.el_texts)
    assert int(y.sum()) == n_positive_sentences  # near misses are never positives


def test_the_passage_that_says_it_is_the_evidence(matcher) -> None:
    passages = _passages(
        [
            "We may disclose information if there is serious harm or danger.",
            "Complaints are acknowledged within five working days.",
            "The office is open on weekdays.",
        ]
    )
    scored = matcher.score_document("doc.txt", "d1", "confidentiality", passages)
    assert scored.evidence.shape == (3, 3)
    assert int(np.argmax(scored.evidence[:, 0])) == 0  # CONF-01 -> first passage
    assert int(np.argmax(scored.evidence[:, 1])) == 1  # COMP-04 -> second passage
    assert scored.evidence[2].max() < scored.evidence[0, 0]


def test_negation_cues() -> None:
    assert NEGATION.search("This policy does not cover children")
    assert NEGATION.search("We don't carry out DBS checks")
    assert not NEGATION.search("Staff must never promise secrecy")


def test_decide_gives_status_score_evidence_and_elements(matcher) -> None:
    passages = _passages(
        ["We disclose information where there is serious harm or danger; a manager authorises disclosure."]
    )
    scored = matcher.score_document("a.txt", "d1", "confidentiality", passages)
    coverage = matcher.decide([scored], scope="a.txt").by_id()
    conf = coverage["CONF-01"]
    assert conf.probabilities["met"] + conf.probabilities["partial"] > conf.probabilities["missing"]
    assert conf.evidence and conf.evidence[0].text.startswith("We disclose")
    assert conf.documents == ["a.txt"]
    assert 0.0 <= conf.score <= 1.0
    retention = coverage["CONF-09"]
    assert retention.status == "missing" and retention.evidence == []
    assert not any(retention.elements.values())


def test_empty_document_is_all_missing(matcher) -> None:
    scored = matcher.score_document("empty.txt", "d0", "other", [])
    coverage = matcher.decide([scored], scope="empty.txt")
    assert coverage.counts() == {"met": 0, "partial": 0, "missing": 3}


def test_submission_pools_evidence_from_several_documents(matcher) -> None:
    a = matcher.score_document(
        "conf.txt", "a", "confidentiality", _passages(["We disclose information if there is serious harm."], "a")
    )
    b = matcher.score_document(
        "comp.txt", "b", "complaints", _passages(["We acknowledge every complaint within five working days."], "b")
    )
    sub = decision_features(matcher.index, [a, b])
    alone = decision_features(matcher.index, [a])
    assert sub[1, 0] > alone[1, 0]  # COMP-04's best evidence comes from the second document
    result = matcher.decide([a, b], scope="submission").by_id()
    assert {e.document for e in result["CONF-01"].evidence} <= {"conf.txt", "comp.txt"}
    assert result["CONF-01"].evidence[0].document == "conf.txt"
    assert result["COMP-04"].evidence[0].document == "comp.txt"


def test_evidence_shows_a_repeated_paragraph_once_per_document(matcher) -> None:
    repeated = "We disclose information if there is serious harm."
    texts = [repeated, "Other words.", repeated, "We share information under a court order."]
    a = matcher.score_document("conf.txt", "a", "confidentiality", _passages(texts, "a"))
    b = matcher.score_document("copy.txt", "b", "confidentiality", _passages([repeated], "b"))
    assert a.evidence[0, 0] == pytest.approx(a.evidence[2, 0])  # the repeat scores as well as the first
    alone = [a.passages[p].text for _, _, p in matcher.top_passages([a], 0, 3)]
    assert alone.count(repeated) == 1 and len(alone) == 3
    docs = [a, b]  # the same words in two documents: both are shown
    both = [(docs[di].name, docs[di].passages[p].text) for _, di, p in matcher.top_passages(docs, 0, 2)]
    assert sorted(both) == [("conf.txt", repeated), ("copy.txt", repeated)]


def test_scoring_several_documents_at_once_matches_scoring_each(matcher) -> None:
    def under(heading: list[str], passages: list[Passage]) -> list[Passage]:
        return [dataclasses.replace(p, section=heading) for p in passages]

    # headings differ between documents, so vectors must be matched back to the right document's passages
    conf = under(["Confidentiality", "When we share"], _passages(["We disclose information if harm.", "B"], "a"))
    comp = under(["Complaints", "Timescales"], _passages(["Complaints are acknowledged in five days."], "c"))
    docs = [
        DocumentPassages("conf.txt", "a", "confidentiality", conf),
        DocumentPassages("empty.txt", "b", "other", []),
        DocumentPassages("comp.txt", "c", "complaints", comp),
    ]
    together = matcher.score_documents(docs)
    assert [s.name for s in together] == ["conf.txt", "empty.txt", "comp.txt"]
    features = documents_features(matcher.index, matcher.encoder, [(d.policy_type, d.passages) for d in docs])
    for got, (feats, elements), doc in zip(together, features, docs, strict=True):
        alone = matcher.score_document(*doc)
        assert got.evidence.shape == alone.evidence.shape == (len(doc.passages), 3)
        np.testing.assert_allclose(got.evidence, alone.evidence, rtol=1e-5)
        want_feats, want_elements = document_features(matcher.index, matcher.encoder, doc.policy_type, doc.passages)
        np.testing.assert_allclose(feats, want_feats, rtol=1e-5)  # heading similarity included
        np.testing.assert_allclose(elements, want_elements, rtol=1e-5)


def test_deciding_several_groups_at_once_matches_deciding_each(matcher) -> None:
    a = matcher.score_document(
        "conf.txt", "a", "confidentiality", _passages(["We disclose information if there is serious harm."], "a")
    )
    b = matcher.score_document("empty.txt", "b", "other", [])
    together = matcher.decide_many([([a], "conf.txt"), ([b], "empty.txt"), ([a, b], "submission")])
    apart = [matcher.decide([a], "conf.txt"), matcher.decide([b], "empty.txt"), matcher.decide([a, b], "submission")]
    assert [c.scope for c in together] == ["conf.txt", "empty.txt", "submission"]
    for got, want in zip(together, apart, strict=True):
        assert [(r.indicator_id, r.status, r.score, len(r.evidence)) for r in got.results] == [
            (r.indicator_id, r.status, r.score, len(r.evidence)) for r in want.results
        ]
    assert together[0].results != together[1].results
    assert matcher.decide_many([]) == []


def test_evidence_specificity_prefers_a_passage_written_for_the_indicator() -> None:
    # four passages evidence every indicator alike; the last is mostly about indicator 0
    generic = [[0.9, 0.9, 0.9]] * 4
    evidence = np.array([*generic, [0.95, 0.2, 0.1]], dtype=np.float32)
    spec = evidence_specificity(evidence)
    assert spec[0] > 3.0  # log-odds(0.95) - log-odds(0.2)
    assert spec[1] == pytest.approx(0.0, abs=1e-5)  # its best passages are as much about the others
    assert spec[0] == pytest.approx(np.log(0.95 / 0.05) - np.log(0.2 / 0.8), rel=1e-4)
    # only the indicator's k best passages count: past them, a specific passage is not seen
    assert evidence_specificity(evidence, k=1)[0] == pytest.approx(spec[0], rel=1e-5)
    weak = np.array([*generic, [0.5, 0.01, 0.01]], dtype=np.float32)
    assert evidence_specificity(weak, k=3)[0] == pytest.approx(0.0, abs=1e-5)
    assert evidence_specificity(np.zeros((0, 3), np.float32)).tolist() == [0.0, 0.0, 0.0]


def test_decision_model_averages_several_fits_reproducibly() -> None:
    rng = np.random.default_rng(1)
    X = rng.uniform(size=(150, len(DECISION_FEATURES))).astype(np.float32)
    y = np.where(X[:, 0] > 0.66, "met", np.where(X[:, 0] > 0.33, "partial", "missing")).tolist()
    areas = ["CONF"] * len(y)
    a = DecisionModel(["CONF", "COMP"], n_estimators=3).fit(X, areas, y)
    b = DecisionModel(["CONF", "COMP"], n_estimators=3).fit(X, areas, y)
    assert len(a.model_.estimators_) == 3
    probs = a.predict_proba(X, areas)
    np.testing.assert_allclose(probs, b.predict_proba(X, areas))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    each = np.mean([est.predict_proba(a._design(X, areas)) for est in a.model_.estimators_], axis=0)
    order = [list(a.model_.classes_).index(s) for s in ("met", "partial", "missing")]
    np.testing.assert_allclose(probs, each[:, order], rtol=1e-5)
    assert (np.array(a.statuses(probs)) == np.array(y)).mean() > 0.9

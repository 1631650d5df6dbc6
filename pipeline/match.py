"""Stages 3-4: score passages against indicators, then decide met / partial / missing with evidence.

Two small scikit-learn models, each with a ``fit`` / ``predict_proba`` surface:

- :class:`EvidenceModel` (passage level): is this passage evidence for this indicator? Its features are
  indicator-relative (similarity to the indicator's exemplars, elements, description and near misses; rank
  among all indicators; key terms; TF-IDF; heading context; document type; negation cues), so one model
  serves every indicator and transfers to catalogues it was not trained on.
- :class:`DecisionModel` (indicator level): from the evidence probabilities of all passages of a document
  (or a whole submission) and how well each essential element is covered, the probability of met, partial and
  missing. Per-area offsets are learned, not hand-picked.

:class:`Matcher` ties them to a catalogue and an encoder. ``pipeline.train`` fits and saves it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from sklearn.ensemble import BaggingClassifier, HistGradientBoostingClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import ThreadpoolController

from pipeline.catalogue import Catalogue, Indicator
from pipeline.coverage import STATUSES, Coverage, Evidence, IndicatorResult, Status
from pipeline.document import Passage
from pipeline.embed import TextEncoder

MAX_ELEMENTS = 4
PASSAGE_FEATURES = (
    "exemplar_max",
    "exemplar_top3",
    "description",
    "element_best",
    "element_mean",
    "near_miss_max",
    "margin_over_near_miss",
    "gap_to_best_indicator",
    "inverse_rank",
    "key_terms",
    "tfidf",
    "section",
    "has_section",
    "policy_type_match",
    "negation",
    "log_words",
    "neighbour_lift",
    "area_gap",
)
_WORD = re.compile(r"[a-z0-9]+")
NEGATION = re.compile(
    r"\b(?:do|does|did|will|shall|can|is|are|was|were|would|should|must|have|has)\s+not\b"
    r"|\b(?:don't|doesn't|won't|isn't|aren't|cannot|can't|haven't|hasn't)\b"
    r"|\bnot\s+(?:cover|apply|include|offer|provide|carry|require|part)\w*"
    r"|\bno\s+(?:longer|need|requirement|obligation)\b|\bout(?:side)? (?:of )?(?:the )?scope\b",
    re.IGNORECASE,
)
# The five document types extraction detects, mapped onto catalogue policy types they usually stand for.
DOC_TYPE_ALIASES = {
    "confidentiality": {"confidentiality", "data_protection", "case_recording"},
    "safeguarding": {"safeguarding", "whistleblowing"},
    "complaints": {"complaints"},
    "equality": {"equality"},
}


@dataclass
class ScoredDocument:
    """Passage x indicator scores for one document: the input to the decision stage."""

    name: str
    doc_id: str
    policy_type: str
    passages: list[Passage]
    evidence: np.ndarray  # (P, I) probability that passage p evidences indicator i
    elements: np.ndarray  # (P, I, MAX_ELEMENTS) similarity to each essential element, -1 where none
    exemplar_max: np.ndarray  # (P, I) raw best similarity to an exemplar
    terms: list[set[str]] = field(default_factory=list)  # per indicator, key terms present in the document


class DocumentPassages(NamedTuple):
    """One document's passages, ready to score."""

    name: str
    doc_id: str
    policy_type: str
    passages: list[Passage]


class IndicatorIndex:
    """Embeddings and lexical profiles of a catalogue's indicators (fitted once, reused for every document)."""

    def __init__(self, catalogue: Catalogue, encoder: TextEncoder) -> None:
        self.catalogue = catalogue
        inds = catalogue.indicators
        self.n = len(inds)
        ex_texts, self.ex_owner = _flatten([ind.exemplars for ind in inds])
        nm_texts, self.nm_owner = _flatten([ind.near_misses or (ind.title,) for ind in inds])
        el_texts: list[str] = []
        el_owner: list[tuple[int, int]] = []
        for i, ind in enumerate(inds):
            for e, element in enumerate(ind.elements[:MAX_ELEMENTS]):
                for text in (element.text, *element.exemplars):
                    el_texts.append(text)
                    el_owner.append((i, e))
        self.el_owner = np.array(el_owner, dtype=np.int64).reshape(-1, 2)
        self.ex_texts, self.nm_texts, self.el_texts = ex_texts, nm_texts, el_texts
        self.ex = encoder.encode(ex_texts)
        self.nm = encoder.encode(nm_texts)
        self.el = encoder.encode(el_texts)
        self.desc = encoder.encode([ind.description for ind in inds])
        self.titles = encoder.encode([f"{catalogue.areas.get(ind.area, ind.area)}: {ind.title}" for ind in inds])
        self.area_codes = sorted({ind.area for ind in inds})
        self.area_members = [
            np.array([i for i, ind in enumerate(inds) if ind.area == code]) for code in self.area_codes
        ]
        self.n_elements = np.array([min(len(ind.elements), MAX_ELEMENTS) for ind in inds])
        self.ex_groups = _Groups(self.ex_owner, self.n)
        self.nm_groups = _Groups(self.nm_owner, self.n)
        self.el_groups = _Groups(self.el_owner[:, 0] * MAX_ELEMENTS + self.el_owner[:, 1], self.n * MAX_ELEMENTS)
        # key terms as word sequences, indexed by their first word: one pass over a text's words finds them all
        self.term_owners: dict[tuple[str, ...], list[int]] = {}
        for i, ind in enumerate(inds):
            for term in {tuple(_words(t)) for t in ind.key_terms} - {()}:
                self.term_owners.setdefault(term, []).append(i)
        self.term_starts: dict[str, list[tuple[str, ...]]] = {}
        for term in self.term_owners:
            self.term_starts.setdefault(term[0], []).append(term)
        bags = [" ".join([ind.title, ind.must_say, *ind.exemplars, *ind.key_terms]) for ind in inds]
        self.tfidf = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=1, stop_words="english")
        self.tfidf_profiles = self.tfidf.fit_transform(bags)
        self.type_match = np.array([[_type_match(t, ind) for ind in inds] for t in (*DOC_TYPE_ALIASES, "other")])
        self._type_row = {t: k for k, t in enumerate((*DOC_TYPE_ALIASES, "other"))}


def _flatten(groups: Sequence[Sequence[str]]) -> tuple[list[str], np.ndarray]:
    texts: list[str] = []
    owner: list[int] = []
    for i, group in enumerate(groups):
        texts.extend(group)
        owner.extend([i] * len(group))
    return texts, np.array(owner, dtype=np.int64)


def _words(text: str) -> list[str]:
    """Lower-case words and numbers: key terms match across case, hyphens, apostrophes and line breaks."""
    return _WORD.findall(text.lower())


def terms_found(index: IndicatorIndex, text: str) -> dict[int, set[str]]:
    """Per indicator (by position), the distinct key terms of that indicator present in ``text``."""
    words = _words(text)
    found: dict[int, set[str]] = {}
    for k, word in enumerate(words):
        for term in index.term_starts.get(word, ()):
            if tuple(words[k : k + len(term)]) == term:
                for i in index.term_owners[term]:
                    found.setdefault(i, set()).add(" ".join(term))
    return found


def _type_match(doc_type: str, ind: Indicator) -> float:
    aliases = DOC_TYPE_ALIASES.get(doc_type, set())
    if ind.policy_types and ind.policy_types[0] in aliases:
        return 1.0
    if aliases.intersection(ind.policy_types):
        return 0.5
    return 0.0


class _Groups:
    """The columns of a similarity matrix grouped by owner, as a padded (groups, width) index, so the best and
    top-k similarity of every group come from one vectorised operation."""

    def __init__(self, owner: np.ndarray, n: int) -> None:
        counts = np.bincount(owner, minlength=n) if len(owner) else np.zeros(n, dtype=np.int64)
        self.n = n
        self.counts = counts
        self.index = np.zeros((n, max(int(counts.max(initial=0)), 1)), dtype=np.int64)
        self.valid = np.zeros(self.index.shape, dtype=bool)
        filled = np.zeros(n, dtype=np.int64)
        for column, group in enumerate(owner):
            self.index[group, filled[group]] = column
            self.valid[group, filled[group]] = True
            filled[group] += 1

    def _blocks(self, sim: np.ndarray) -> np.ndarray:
        if sim.shape[1] == 0:
            return np.full((sim.shape[0], self.n, 1), -np.inf, dtype=np.float32)
        return np.where(self.valid, sim[:, self.index], -np.inf)

    def max(self, sim: np.ndarray) -> np.ndarray:
        """(rows, groups) best similarity per group; -1 for a group with no member."""
        best = self._blocks(sim).max(axis=2)
        return np.where(np.isfinite(best), best, -1.0).astype(np.float32)

    def top_mean(self, sim: np.ndarray, k: int = 3) -> np.ndarray:
        """(rows, groups) mean of the ``k`` best similarities per group (fewer when the group is smaller)."""
        top = -np.sort(-self._blocks(sim), axis=2)[:, :, :k]
        total = np.where(np.isfinite(top), top, 0.0).sum(axis=2)
        return (total / np.maximum(np.minimum(self.counts, k), 1)).astype(np.float32)


def passage_features(
    index: IndicatorIndex,
    texts: Sequence[str],
    vectors: np.ndarray,
    section_vectors: np.ndarray,
    has_section: np.ndarray,
    doc_type: str,
    *,
    mask: Sequence[tuple[str, int] | None] | None = None,
    sequential: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Features (P, I, F) in ``PASSAGE_FEATURES`` order, and element similarities (P, I, MAX_ELEMENTS).

    ``mask`` (training only) names, per row, a catalogue sentence the row *is* (``("ex", k)``, ``("nm", k)``
    or ``("el", k)``), so a catalogue exemplar used as a training passage is not compared with itself.
    ``sequential`` says the rows are consecutive passages of one document (so neighbours mean something).
    """
    n = index.n
    sim_ex = vectors @ index.ex.T
    sim_nm = vectors @ index.nm.T
    sim_el = vectors @ index.el.T
    if mask is not None:
        for row, item in enumerate(mask):
            if item is not None:
                kind, k = item
                {"ex": sim_ex, "nm": sim_nm, "el": sim_el}[kind][row, k] = -1.0
    ex_max = index.ex_groups.max(sim_ex)
    ex_top3 = index.ex_groups.top_mean(sim_ex)
    nm_max = index.nm_groups.max(sim_nm)
    desc = vectors @ index.desc.T
    elements = index.el_groups.max(sim_el).reshape(len(texts), n, MAX_ELEMENTS)
    valid = elements > -1.0
    element_best = np.where(valid, elements, -1.0).max(axis=2)
    element_mean = np.where(valid, elements, 0.0).sum(axis=2) / np.maximum(valid.sum(axis=2), 1)
    best = ex_max.max(axis=1, keepdims=True)
    rank = (ex_max[:, None, :] > ex_max[:, :, None]).sum(axis=2)
    terms = np.zeros((len(texts), n), dtype=np.float32)
    for p, text in enumerate(texts):
        for i, hits in terms_found(index, text).items():
            terms[p, i] = min(len(hits), 3)
    lexical = (index.tfidf.transform(list(texts)) @ index.tfidf_profiles.T).toarray().astype(np.float32)
    section = section_vectors @ index.titles.T * has_section[:, None]
    type_row = index.type_match[index._type_row.get(doc_type, index._type_row["other"])]
    negation = np.array([1.0 if NEGATION.search(t) else 0.0 for t in texts], dtype=np.float32)
    log_words = np.log1p(np.array([len(t.split()) for t in texts], dtype=np.float32))
    # a short list item often only reads as evidence with the items around it
    lift = np.zeros_like(ex_max)
    if sequential and len(texts) > 1:
        around = np.maximum(np.vstack([ex_max[1:], ex_max[-1:]]), np.vstack([ex_max[:1], ex_max[:-1]]))
        lift = np.maximum(around - ex_max, 0.0)
    # specificity inside the area: is this the passage's closest indicator among its neighbours in the catalogue?
    area_gap = np.zeros_like(ex_max)
    for members in index.area_members:
        block = ex_max[:, members]
        if len(members) > 1:
            top2 = -np.sort(-block, axis=1)[:, :2]
            best_other = np.where(block >= top2[:, :1], top2[:, 1:2], top2[:, :1])
            area_gap[:, members] = block - best_other
    feats = np.stack(
        [
            ex_max,
            ex_top3,
            desc,
            element_best,
            element_mean,
            nm_max,
            ex_max - nm_max,
            ex_max - best,
            1.0 / (1.0 + rank),
            terms,
            lexical,
            section,
            np.broadcast_to(has_section[:, None], ex_max.shape),
            np.broadcast_to(type_row[None, :], ex_max.shape),
            np.broadcast_to(negation[:, None], ex_max.shape),
            np.broadcast_to(log_words[:, None], ex_max.shape),
            lift,
            area_gap,
        ],
        axis=2,
    ).astype(np.float32)
    return feats, elements


class EvidenceModel:
    """Passage-level classifier: P(passage evidences indicator) from indicator-relative features."""

    def __init__(self, C: float = 0.5, max_iter: int = 2000, class_weight: str | None = "balanced") -> None:
        self.C = C
        self.max_iter = max_iter
        self.class_weight = class_weight
        self.model_ = make_pipeline(
            StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, class_weight=class_weight)
        )

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> EvidenceModel:
        """Fit on rows of ``PASSAGE_FEATURES`` with binary labels."""
        self.model_.fit(X, y, logisticregression__sample_weight=sample_weight)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(evidence) per row."""
        if len(X) == 0:
            return np.zeros(0, dtype=np.float32)
        return np.asarray(self.model_.predict_proba(X)[:, 1], dtype=np.float32)


DECISION_FEATURES = (
    "evidence_max",
    "evidence_second",
    "evidence_third",
    "evidence_top5_sum",
    "log_n_over_half",
    "log_n_over_fifth",
    "element_cover_mean",
    "element_cover_min",
    "exemplar_max",
    "key_term_share",
    "policy_type_match",
    "area_share",
    "evidence_specificity",
)


def decision_features(index: IndicatorIndex, docs: Sequence[ScoredDocument]) -> np.ndarray:
    """Indicator-level features (I, F) over the pooled passages of ``docs`` (one document or a submission)."""
    n = index.n
    if not docs or sum(len(d.passages) for d in docs) == 0:
        out = np.zeros((n, len(DECISION_FEATURES)), dtype=np.float32)
        return out
    ev = np.concatenate([d.evidence for d in docs], axis=0)
    el = np.concatenate([d.elements for d in docs], axis=0)
    ex = np.concatenate([d.exemplar_max for d in docs], axis=0)
    top = -np.sort(-ev, axis=0)
    pad = np.zeros((max(0, 5 - top.shape[0]), n), dtype=np.float32)
    top = np.vstack([top, pad])
    # an element is as well covered as its best passage that is also evidence for the indicator
    support = (ev[:, :, None] * np.clip(el, 0.0, 1.0)).max(axis=0)  # (I, E)
    valid = np.arange(MAX_ELEMENTS)[None, :] < index.n_elements[:, None]
    cover_mean = np.where(valid, support, 0.0).sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
    cover_min = np.where(valid, support, 1.0).min(axis=1)
    terms = [set().union(*(d.terms[i] for d in docs)) for i in range(n)]
    n_terms = np.array([max(len(ind.key_terms), 1) for ind in index.catalogue.indicators], dtype=np.float32)
    term_share = np.array([len(t) for t in terms], dtype=np.float32) / n_terms
    type_match = np.max(
        [index.type_match[index._type_row.get(d.policy_type, index._type_row["other"])] for d in docs], axis=0
    )
    # how much of the text is about this indicator's area: the share of passages whose closest indicator is in it
    area_of = np.array([index.area_codes.index(ind.area) for ind in index.catalogue.indicators])
    closest_area = area_of[np.argmax(ex, axis=1)]
    area_share = np.array([(closest_area == a).mean() for a in area_of], dtype=np.float32)
    specificity = evidence_specificity(ev)
    feats = np.stack(
        [
            top[0],
            top[1],
            top[2],
            top[:5].sum(axis=0),
            np.log1p((ev > 0.5).sum(axis=0)),
            np.log1p((ev > 0.2).sum(axis=0)),
            cover_mean,
            cover_min,
            ex.max(axis=0),
            term_share,
            type_match,
            area_share,
            specificity,
        ],
        axis=1,
    ).astype(np.float32)
    return feats


def evidence_specificity(evidence: np.ndarray, k: int = 3) -> np.ndarray:
    """Per indicator, how much more its best passages evidence it than anything else: over its ``k`` most
    probable passages, the largest log-odds margin of this indicator over that passage's best other indicator.

    General wording ("we take safeguarding seriously") scores high for every indicator of an area; a passage
    written *for* an indicator stands out from its neighbours. Measured on the sample policies (5-fold
    cross-validation by document, four random splits): macro-F1 0.785 -> 0.796, better in every split.
    """
    n = evidence.shape[1]
    if len(evidence) == 0 or n < 2:
        return np.zeros(n, dtype=np.float32)
    p = np.clip(evidence.astype(np.float64), 1e-6, 1 - 1e-6)
    logit = np.log(p / (1 - p))
    cols = np.arange(n)
    best = np.argsort(-evidence, axis=0, kind="stable")[:k]  # (k, I) passage positions
    own = logit[best, cols]  # (k, I)
    rows = logit[best]  # (k, I, I): row [r, i] holds every indicator's log-odds for passage best[r, i]
    rows[:, cols, cols] = -np.inf
    return (own - rows.max(axis=2)).max(axis=0).astype(np.float32)


@functools.cache
def _thread_pools() -> ThreadpoolController:
    # Inspecting the loaded native libraries took 5 ms: once per process, not once per prediction.
    return ThreadpoolController()


class DecisionModel:
    """Indicator-level classifier over ``DECISION_FEATURES`` plus a learned offset per area.

    Gradient-boosted shallow trees: the decision depends on interactions (strong evidence for one element but
    none for another means partial) that a linear model cannot express. Small and regularised, because it is
    trained on a few thousand indicator rows; for the same reason a single fit is unstable (a small change in
    its training features moved dev-corpus macro-F1 by up to 0.02), so ``n_estimators`` fits on bootstrap
    resamples are averaged.
    """

    def __init__(
        self,
        areas: Sequence[str],
        max_iter: int = 150,
        learning_rate: float = 0.05,
        max_leaf_nodes: int = 8,
        n_estimators: int = 8,
        coverage_weight: float = 1.0,
    ) -> None:
        self.areas = list(areas)
        # Multiplies P(met) and P(partial) against P(missing) when choosing a status. Learned by training on
        # held-out predictions (see pipeline.train.choose_coverage_weight); 1.0 is the plain most-probable class.
        self.coverage_weight = coverage_weight
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.n_estimators = n_estimators
        trees = HistGradientBoostingClassifier(
            max_iter=max_iter,
            learning_rate=learning_rate,
            max_leaf_nodes=max_leaf_nodes,
            min_samples_leaf=20,
            l2_regularization=1.0,
        )
        self.model_ = BaggingClassifier(trees, n_estimators=n_estimators, random_state=0)

    def _design(self, X: np.ndarray, areas: Sequence[str]) -> np.ndarray:
        onehot = np.zeros((len(areas), len(self.areas)), dtype=np.float32)
        for r, area in enumerate(areas):
            if area in self.areas:
                onehot[r, self.areas.index(area)] = 1.0
        return np.hstack([X, onehot])

    def fit(self, X: np.ndarray, areas: Sequence[str], y: Sequence[str]) -> DecisionModel:
        """Fit on indicator-level rows with labels met / partial / missing."""
        self.model_.fit(self._design(X, areas), np.asarray(y))
        return self

    def predict_proba(self, X: np.ndarray, areas: Sequence[str]) -> np.ndarray:
        """(rows, 3) probabilities in ``STATUSES`` order (met, partial, missing)."""
        # A few hundred rows: OpenMP threads cost more than they save, and when the other core is busy
        # (encoding the next submission) they spin: measured 0.62 s against 0.08 s on one thread.
        with _thread_pools().limit(limits=1, user_api="openmp"):
            raw = self.model_.predict_proba(self._design(X, areas))
        classes = list(self.model_.classes_)
        out = np.zeros((len(X), len(STATUSES)), dtype=np.float32)
        for k, status in enumerate(STATUSES):
            if status in classes:
                out[:, k] = raw[:, classes.index(status)]
        return out

    def statuses(self, probs: np.ndarray) -> list[Status]:
        """The status of each row of :meth:`predict_proba` output, with ``coverage_weight`` applied."""
        return weighted_statuses(probs, self.coverage_weight)


def weighted_statuses(probs: np.ndarray, coverage_weight: float) -> list[Status]:
    """Per row of (met, partial, missing) probabilities, the status that wins once P(met) and P(partial) are
    multiplied by ``coverage_weight``."""
    weights = np.array([coverage_weight, coverage_weight, 1.0], dtype=np.float32)
    return [STATUSES[int(k)] for k in np.argmax(probs * weights, axis=1)]


class Matcher:
    """A catalogue, an encoder and the two trained models: passages in, coverage out."""

    def __init__(
        self,
        catalogue: Catalogue,
        encoder: TextEncoder,
        evidence_model: EvidenceModel,
        decision_model: DecisionModel,
        *,
        evidence_per_indicator: int = 3,
    ) -> None:
        self.catalogue = catalogue
        self.encoder = encoder
        self.index = IndicatorIndex(catalogue, encoder)
        self.evidence_model = evidence_model
        self.decision_model = decision_model
        self.evidence_per_indicator = evidence_per_indicator

    def score_document(self, name: str, doc_id: str, policy_type: str, passages: list[Passage]) -> ScoredDocument:
        """Score every passage of one document against every indicator."""
        return self.score_documents([DocumentPassages(name, doc_id, policy_type, passages)])[0]

    def score_documents(self, documents: Sequence[DocumentPassages]) -> list[ScoredDocument]:
        """:meth:`score_document` for several documents with one encode call for all their text."""
        features = documents_features(self.index, self.encoder, [(d.policy_type, d.passages) for d in documents])
        return [
            score_features(self.index, self.evidence_model, d.name, d.doc_id, d.policy_type, d.passages, f, e)
            for d, (f, e) in zip(documents, features, strict=True)
        ]

    def decide(self, docs: Sequence[ScoredDocument], scope: str) -> Coverage:
        """Decide every indicator over ``docs`` together (one document, or a whole submission)."""
        return self.decide_many([(docs, scope)])[0]

    def decide_many(self, groups: Sequence[tuple[Sequence[ScoredDocument], str]]) -> list[Coverage]:
        """:meth:`decide` for several ``(docs, scope)`` groups with one call of the decision model (each call of
        the boosted trees has a fixed cost that, per document, was a visible share of a screening run)."""
        if not groups:
            return []
        n = self.index.n
        feats = np.vstack([decision_features(self.index, docs) for docs, _ in groups])
        areas = [ind.area for ind in self.catalogue.indicators] * len(groups)
        probs = self.decision_model.predict_proba(feats, areas)
        statuses = self.decision_model.statuses(probs)
        return [
            self._coverage(docs, scope, probs[g * n : (g + 1) * n], statuses[g * n : (g + 1) * n])
            for g, (docs, scope) in enumerate(groups)
        ]

    def _coverage(
        self, docs: Sequence[ScoredDocument], scope: str, probs: np.ndarray, statuses: Sequence[Status]
    ) -> Coverage:
        results = []
        for i, ind in enumerate(self.catalogue.indicators):
            p = probs[i]
            status = statuses[i]
            evidence = self._evidence(docs, i) if status != "missing" else []
            results.append(
                IndicatorResult(
                    indicator_id=ind.id,
                    status=status,
                    score=float(p[0] + 0.5 * p[1]),
                    probabilities={s: float(p[k]) for k, s in enumerate(STATUSES)},
                    evidence=evidence,
                    elements=self._elements(ind, evidence, status),
                    documents=sorted({e.document for e in evidence}),
                )
            )
        return Coverage(scope=scope, results=results)

    def top_passages(self, docs: Sequence[ScoredDocument], i: int, k: int) -> list[tuple[float, int, int]]:
        """The ``k`` best (probability, document position, passage position) for indicator ``i``.

        A passage with the same words as a better one of the same document is left out: policies repeat a
        paragraph in two procedures, and the reader would see the same words twice in place of other evidence.
        The same words in two documents are kept: the submission's evidence names both.
        """
        counts = [len(d.passages) for d in docs]
        if not sum(counts):
            return []
        scores = np.concatenate([d.evidence[:, i] for d in docs])
        owners = np.repeat(np.arange(len(docs)), counts)
        positions = np.concatenate([np.arange(n) for n in counts])
        top: list[tuple[float, int, int]] = []
        seen: set[tuple[int, str]] = set()
        # stable: equal probabilities keep document and passage order
        for r in np.argsort(-scores, kind="stable"):
            di, p = int(owners[r]), int(positions[r])
            words = (di, " ".join(docs[di].passages[p].text.split()))
            if words not in seen:
                seen.add(words)
                top.append((float(scores[r]), di, p))
                if len(top) == k:
                    break
        return top

    def _evidence(self, docs: Sequence[ScoredDocument], i: int) -> list[Evidence]:
        out = []
        n_el = int(self.index.n_elements[i])
        ind = self.catalogue.indicators[i]
        for prob, di, p in self.top_passages(docs, i, self.evidence_per_indicator):
            doc = docs[di]
            passage = doc.passages[p]
            element = ind.elements[int(np.argmax(doc.elements[p, i, :n_el]))].id if n_el else None
            out.append(
                Evidence(
                    document=doc.name,
                    doc_id=doc.doc_id,
                    passage_index=passage.index,
                    text=passage.text,
                    score=prob,
                    section=list(passage.section),
                    pages=list(passage.pages),
                    start=passage.start,
                    end=passage.end,
                    boxes=[b.as_list() for b in passage.boxes],
                    element=element,
                )
            )
        return out

    @staticmethod
    def _elements(ind: Indicator, evidence: list[Evidence], status: Status) -> dict[str, bool]:
        # met means every element is evidenced; for partial, an element counts when a passage the evidence model
        # accepts (p >= 0.5) is closest to that element.
        if status == "met":
            return {e.id: True for e in ind.elements}
        supported = {ev.element for ev in evidence if ev.score >= 0.5}
        return {e.id: e.id in supported for e in ind.elements}


def score_features(
    index: IndicatorIndex,
    evidence_model: EvidenceModel,
    name: str,
    doc_id: str,
    policy_type: str,
    passages: list[Passage],
    feats: np.ndarray,
    elements: np.ndarray,
) -> ScoredDocument:
    """A document's evidence probabilities from its already computed passage features."""
    flat = feats.reshape(-1, feats.shape[2])
    evidence = evidence_model.predict_proba(flat).reshape(-1, index.n) if len(flat) else np.zeros((0, index.n))
    return ScoredDocument(
        name=name,
        doc_id=doc_id,
        policy_type=policy_type,
        passages=passages,
        evidence=evidence.astype(np.float32),
        elements=elements,
        exemplar_max=feats[:, :, 0],
        terms=document_terms(index, passages),
    )


def passage_texts(passages: Sequence[Passage]) -> list[str]:
    """What is embedded for each passage: its list lead-in (if any) and its text."""
    out = []
    for p in passages:
        context = getattr(p, "context", "")
        out.append(f"{context} {p.text}".strip() if context else p.text)
    return out


def section_texts(passages: Sequence[Passage]) -> list[str]:
    """The heading context embedded for each passage (innermost two levels)."""
    return [" / ".join(p.section[-2:]) for p in passages]


def document_features(
    index: IndicatorIndex, encoder: TextEncoder, policy_type: str, passages: Sequence[Passage]
) -> tuple[np.ndarray, np.ndarray]:
    """Embed a document's passages and headings and compute their features against every indicator."""
    return documents_features(index, encoder, [(policy_type, passages)])[0]


def documents_features(
    index: IndicatorIndex, encoder: TextEncoder, documents: Sequence[tuple[str, Sequence[Passage]]]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`document_features` for several ``(policy_type, passages)`` documents.

    One encode call for every passage and heading of all of them: each call has a fixed cost and sorts its own
    texts by length, so one call wastes less on padding; measured in a screening flow, one call per submission
    instead of one per document also kept encoding from competing with the extraction of the next document.
    """
    texts = [passage_texts(passages) for _, passages in documents]
    sections = [section_texts(passages) for _, passages in documents]
    headings = sorted({s for doc in sections for s in doc if s})
    flat = [t for doc in texts for t in doc]
    encoded = encoder.encode(flat + headings) if flat else np.zeros((0, 0), dtype=np.float32)
    heading_vec = dict(zip(headings, encoded[len(flat) :], strict=True))
    out: list[tuple[np.ndarray, np.ndarray]] = []
    start = 0
    for (policy_type, _), doc_texts, doc_sections in zip(documents, texts, sections, strict=True):
        if not doc_texts:
            out.append(
                (
                    np.zeros((0, index.n, len(PASSAGE_FEATURES)), dtype=np.float32),
                    np.zeros((0, index.n, MAX_ELEMENTS), dtype=np.float32),
                )
            )
            continue
        vectors = encoded[start : start + len(doc_texts)]
        start += len(doc_texts)
        zero = np.zeros(vectors.shape[1], dtype=np.float32)
        section_vectors = np.vstack([heading_vec.get(s, zero) for s in doc_sections])
        has_section = np.array([1.0 if s else 0.0 for s in doc_sections], dtype=np.float32)
        out.append(passage_features(index, doc_texts, vectors, section_vectors, has_section, policy_type))
    return out


def document_terms(index: IndicatorIndex, passages: Sequence[Passage]) -> list[set[str]]:
    """Per indicator, which of its key terms occur anywhere in the passages."""
    found = terms_found(index, "\n".join(p.text for p in passages))
    return [found.get(i, set()) for i in range(index.n)]

"""What a document says about itself: title, kind of policy, review date, version and language.

Everything here is a transparent heuristic an assessor can check by eye: keyword lists, date patterns next to
words such as "next review", and stop-word counts. Findings that need a person's attention (an overdue review,
text that is not English) are appended to ``ReaderOutput.warnings`` as plain sentences.
"""

from __future__ import annotations

import calendar
import datetime
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from pipeline.document import DocumentMetadata
from pipeline.extract.base import ReaderOutput

POLICY_TYPES: Final = ("confidentiality", "safeguarding", "complaints", "equality")
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_LETTERS = re.compile(r"[^\W\d_]+")


def count_words(text: str) -> int:
    """Words in ``text``: runs of letters or digits ("don't" is one word; "|" and "•" are none)."""
    return len(_WORD.findall(text))


# --------------------------------------------------------------------------------------------------------------
# Title
# --------------------------------------------------------------------------------------------------------------

_JUNK_TITLES: Final = frozenset({"", "title", "untitled", "document", "word document", "microsoft word document"})
_TITLE_MAX_WORDS: Final = 15


def _clean_title_hint(hint: str) -> str:
    """A declared title without the noise tools add ("Microsoft Word - policy.docx")."""
    title = re.sub(r"^\s*microsoft word\s*-\s*", "", hint, flags=re.IGNORECASE)
    title = re.sub(r"\.(?:docx?|docm|pdf|txt|md|rtf|odt)\s*$", "", title, flags=re.IGNORECASE).strip()
    return "" if title.lower() in _JUNK_TITLES else title


def _title(output: ReaderOutput) -> str:
    hint = _clean_title_hint(output.title_hint)
    if hint:
        return hint
    for block in output.blocks:
        if block.kind == "heading":
            return output.text[block.start : block.end][:200]
    for block in output.blocks:
        text = output.text[block.start : block.end]
        if len(text.split()) <= _TITLE_MAX_WORDS:
            return text
    return " ".join(output.text.split()[:10])


# --------------------------------------------------------------------------------------------------------------
# Policy type
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TypeTerms:
    title: re.Pattern[str]  # terms that name the policy in a title or heading
    body: tuple[tuple[re.Pattern[str], int], ...]  # (term, weight) counted through the text


def _terms(title: list[str], body: list[tuple[str, int]]) -> _TypeTerms:
    # Body terms run over lower-cased text and start with a literal, with the leading word boundary checked by
    # hand (_count_terms): a pattern starting with \b or IGNORECASE loses the regex engine's literal-prefix scan
    # and is over ten times slower on a long policy.
    return _TypeTerms(
        title=re.compile(r"\b(?:" + "|".join(title) + r")", re.IGNORECASE),
        body=tuple((re.compile(term + r"\b"), weight) for term, weight in body),
    )


def _count_terms(pattern: re.Pattern[str], lowered: str) -> int:
    """Matches of ``pattern`` in ``lowered`` that start at a word boundary."""
    return sum(1 for m in pattern.finditer(lowered) if m.start() == 0 or not lowered[m.start() - 1].isalnum())


_TYPE_TERMS: Final[dict[str, _TypeTerms]] = {
    "confidentiality": _terms(
        # Data protection and privacy policies are their own kind ("other"): their terms count only in the body.
        [r"confidential", r"information[- ]sharing"],
        [(r"confidential\w*", 2), (r"information[- ]sharing", 2), (r"consent\w*", 1), (r"disclos\w+", 1),
         (r"personal (?:data|information)", 1), (r"data protection", 1), (r"gdpr", 1), (r"need[- ]to[- ]know", 1),
         (r"privacy", 1)],
    ),
    "safeguarding": _terms(
        [r"safeguard", r"child protection", r"adults? at risk", r"protection of (?:vulnerable )?(?:adults|children)",
         r"abuse"],
        [(r"safeguard\w*", 2), (r"abuse\w*", 2), (r"neglect\w*", 2), (r"at risk", 1), (r"dbs", 1), (r"harm", 1),
         (r"exploitation", 1), (r"section 42", 1), (r"modern slavery", 1), (r"child protection", 1)],
    ),
    "complaints": _terms(
        [r"complain", r"compliments?", r"feedback", r"concerns"],
        [(r"complain\w*", 2), (r"ombudsman", 2), (r"stage (?:one|two|three|1|2|3)", 1), (r"appeal\w*", 1),
         (r"resolution", 1), (r"investigat\w+", 1), (r"compliments?", 1)],
    ),
    "equality": _terms(
        [r"equalit", r"diversity", r"inclusion", r"equal opportunit", r"edi\b", r"anti[- ]discrimination"],
        [(r"equality", 2), (r"diversity", 2), (r"discriminat\w*", 2), (r"protected characteristics?", 2),
         (r"inclusi\w+", 1), (r"reasonable adjustments?", 1), (r"harass\w*", 1), (r"victimi[sz]\w+", 1)],
    ),
}  # fmt: skip
_TITLE_POINTS: Final = 6.0  # the title names the policy: the strongest single piece of evidence
_HEADING_POINTS: Final = 1.5  # per heading naming it, up to _MAX_HEADINGS
_MAX_HEADINGS: Final = 4
_BODY_POINTS_PER_DENSITY: Final = 0.1  # per weighted hit per 1,000 words
_MAX_BODY_POINTS: Final = 6.0
_MIN_WORDS_FOR_DENSITY: Final = 200  # a very short text would otherwise turn two mentions into a high density
# Best score under this: not clearly any of the four. A title naming the type clears it alone; without one, the
# headings and body must be dense with the type's terms (a whistleblowing policy that mentions confidentiality
# and complaints in passing is "other").
_OTHER_BELOW: Final = 4.5
_FULL_CONFIDENCE_AT: Final = 9.0


def score_policy_types(title: str, headings: Iterable[str], body: str) -> dict[str, float]:
    """Evidence points per policy type: title naming it, headings naming it, and weighted term density."""
    headings = list(headings)
    words = max(count_words(body), _MIN_WORDS_FOR_DENSITY)
    body = body.lower()
    scores: dict[str, float] = {}
    for policy_type, terms in _TYPE_TERMS.items():
        score = _TITLE_POINTS if terms.title.search(title) else 0.0
        score += _HEADING_POINTS * min(_MAX_HEADINGS, sum(1 for h in headings if terms.title.search(h)))
        weighted = sum(weight * _count_terms(pattern, body) for pattern, weight in terms.body)
        score += min(_MAX_BODY_POINTS, _BODY_POINTS_PER_DENSITY * weighted * 1000 / words)
        scores[policy_type] = round(score, 3)
    return scores


def _policy_type(scores: dict[str, float]) -> tuple[str, float]:
    """The best-scoring type and a confidence: its share of all evidence times how strong it is on its own."""
    best_type = max(scores, key=lambda t: scores[t])
    best = scores[best_type]
    total = sum(scores.values())
    if best < _OTHER_BELOW or total <= 0:
        # Confidence that it is none of the four: high when nothing scored at all.
        return "other", round(1.0 - best / _OTHER_BELOW, 2) if best < _OTHER_BELOW else 0.0
    confidence = (best / total) * min(1.0, best / _FULL_CONFIDENCE_AT)
    return best_type, round(min(1.0, max(0.0, confidence)), 2)


# --------------------------------------------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------------------------------------------

_MONTHS: Final = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name})
_MONTHS["sept"] = 9
_MONTH_RE: Final = r"(?:" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")"
_DATE = re.compile(
    r"\b(?:"
    r"(?P<iy>\d{4})-(?P<im>\d{1,2})-(?P<id>\d{1,2})"
    r"|(?P<nd>\d{1,2})[/.\-](?P<nm>\d{1,2})[/.\-](?P<ny>\d{4}|\d{2})(?!\d)"
    rf"|(?P<dd>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<dm>{_MONTH_RE})\.?,?\s+(?P<dy>\d{{4}})"
    rf"|(?P<am>{_MONTH_RE})\.?\s+(?P<ad>\d{{1,2}})(?:st|nd|rd|th)?,\s*(?P<ay>\d{{4}})"
    rf"|(?P<mm>{_MONTH_RE})\.?,?\s+(?P<my>\d{{4}})"
    r")\b",
    re.IGNORECASE,
)
_YEAR_ONLY = re.compile(r"^[\s:\-–|]*(?P<y>(?:19|20)\d{2})\b")
# Words that introduce a date, grouped by what the date means. Longer phrases come first in each group, and the
# leftmost match wins, so "last reviewed" is an approval and "next review date" a review.
_CUES = re.compile(
    r"\b(?:"
    r"(?P<approved>last\s+reviewed(?:\s+on)?|last\s+review(?:\s+date)?|date\s+(?:last\s+)?reviewed|reviewed(?:\s+on)?"
    r"|date\s+(?:of\s+)?approv(?:ed|al)|approval\s+date|approved|adopted|ratified)"
    r"|(?P<review>next\s+review(?:\s+date)?|date\s+(?:of|for)\s+(?:next\s+)?review|review\s+due(?:\s+date)?"
    r"|due\s+for\s+review|review\s+date|to\s+be\s+reviewed(?:\s+(?:by|on|in))?|review\s+by)"
    r"|(?P<issued>issue\s+date|date\s+of\s+issue|issued|last\s+updated|updated|effective\s+(?:from|date)"
    r"|date\s+(?:written|created)|published)"
    r"|(?P<bare>review)"
    r")\b",
    re.IGNORECASE,
)
_CUE_KEYS: Final = ("review", "approv", "adopted", "ratified", "issue", "updated", "effective", "date", "published")
_CUE_WINDOW: Final = 70  # characters after a cue searched for its date
_BARE_CUE_WINDOW: Final = 20  # "review" alone is common in prose: only a date right after it counts
_APPROVAL_VALID_YEARS: Final = 3


@dataclass(frozen=True)
class _FoundDate:
    kind: str  # review | approved | issued
    date: datetime.date
    precision: str  # day | month | year

    @property
    def period_end(self) -> datetime.date:
        """The last day the date can mean: "March 2025" is not overdue until March is over."""
        if self.precision == "year":
            return datetime.date(self.date.year, 12, 31)
        if self.precision == "month":
            last = calendar.monthrange(self.date.year, self.date.month)[1]
            return datetime.date(self.date.year, self.date.month, last)
        return self.date

    def human(self) -> str:
        month = calendar.month_name[self.date.month]
        if self.precision == "year":
            return str(self.date.year)
        if self.precision == "month":
            return f"{month} {self.date.year}"
        return f"{self.date.day} {month} {self.date.year}"


def _make_date(year: str, month: str | int, day: str | int) -> datetime.date | None:
    y = int(year)
    if y < 100:
        y += 2000  # "12/03/25": policies are recent, two-digit years are this century
    m = month if isinstance(month, int) else (int(month) if month.isdigit() else _MONTHS.get(month.lower(), 0))
    if not 1990 <= y <= 2100:
        return None
    try:
        return datetime.date(y, m, int(day))
    except ValueError:
        return None


def parse_date(text: str) -> tuple[datetime.date, str] | None:
    """The first date in ``text`` and its precision ("day" or "month"); UK day-first for numeric dates."""
    for match in _DATE.finditer(text):
        g = match.groupdict()
        if g["iy"]:
            found, precision = _make_date(g["iy"], g["im"], g["id"]), "day"
        elif g["ny"]:
            found, precision = _make_date(g["ny"], g["nm"], g["nd"]), "day"
        elif g["dy"]:
            found, precision = _make_date(g["dy"], g["dm"], g["dd"]), "day"
        elif g["ay"]:
            found, precision = _make_date(g["ay"], g["am"], g["ad"]), "day"
        else:
            found, precision = _make_date(g["my"], g["mm"], 1), "month"
        if found is not None:
            return found, precision
    return None


def _dates_in(source: str) -> list[_FoundDate]:
    """Dates introduced by a cue, line by line (a cue's date is on its own line or table row)."""
    found: list[_FoundDate] = []
    for line in source.split("\n"):
        lowered = line.lower()
        # Cheap substring test first: most lines of a long policy mention none of the cue words.
        if any(key in lowered for key in _CUE_KEYS):
            found.extend(_dates_in_line(line))
    return found


def _dates_in_line(source: str) -> list[_FoundDate]:
    found: list[_FoundDate] = []
    cues = list(_CUES.finditer(source))
    for i, cue in enumerate(cues):
        kind = cue.lastgroup or "bare"
        limit = _BARE_CUE_WINDOW if kind == "bare" else _CUE_WINDOW
        end = cue.end() + limit
        if i + 1 < len(cues):
            end = min(end, cues[i + 1].start())  # a date after the next cue belongs to that cue
        window = source[cue.end() : end]
        kind = "review" if kind == "bare" else kind
        parsed = parse_date(window)
        if parsed is not None:
            found.append(_FoundDate(kind, parsed[0], parsed[1]))
            continue
        year = _YEAR_ONLY.match(window)
        if year:
            found.append(_FoundDate(kind, datetime.date(int(year.group("y")), 1, 1), "year"))
    return found


def _choose_date(found: list[_FoundDate]) -> _FoundDate | None:
    """The latest next-review date; else the latest approval; else the latest issue date."""
    for kind in ("review", "approved", "issued"):
        of_kind = [f for f in found if f.kind == kind]
        if of_kind:
            return max(of_kind, key=lambda f: f.date)
    return None


# --------------------------------------------------------------------------------------------------------------
# Version and language
# --------------------------------------------------------------------------------------------------------------

_VERSION = re.compile(
    r"\b(?:version|ver\.)\s*(?:no\.?|number)?\s*[:#.\-]?\s*(?P<a>\d+(?:\.\d+){0,3})\b"
    r"|\bv\.?(?P<b>\d+(?:\.\d+){0,3})\b",
    re.IGNORECASE,
)


def _version(sources: Iterable[str]) -> str | None:
    for source in sources:
        for match in _VERSION.finditer(source):
            number = match.group("a") or match.group("b")
            if "." not in number and int(number) > 100:  # "version 2010" is a year, not a version
                continue
            return number
    return None


# Function words frequent in running text and rare in the other language. Words both languages use ("a", "i",
# "o") are left out so short English words cannot make a text look Welsh.
_WELSH_WORDS: Final = frozenset({
    "y", "yr", "ac", "yn", "ar", "gyda", "mae", "ein", "eich", "polisi", "gwasanaeth", "gwasanaethau", "bod",
    "wedi", "neu", "gyfer", "hwn", "hon", "hyn", "fydd", "dylai", "unrhyw", "pobl", "rydym", "bydd", "sydd", "ei",
    "gan", "fel", "oes", "nad", "nid", "ddim", "cael", "gael", "hefyd", "pan", "lle", "cyfrinachedd", "diogelu",
    "cwyn", "cwynion", "eiriolaeth", "eiriolwr", "gwybodaeth"
})  # fmt: skip
_ENGLISH_WORDS: Final = frozenset({
    "the", "and", "of", "to", "is", "in", "that", "for", "be", "will", "with", "are", "this", "on", "or", "by",
    "as", "we", "our", "it", "not", "have", "an", "any", "must", "should", "they", "their", "from", "who", "which"
})  # fmt: skip
_MIN_TOKENS_FOR_LANGUAGE: Final = 30
_ENGLISH_MIN_RATIO: Final = 0.08
_WELSH_PART_RATIO: Final = 0.04


def _language(text: str) -> tuple[str, float, float]:
    """("en" | "cy" | "unknown", English stop-word ratio, Welsh stop-word ratio)."""
    # Letters only, split at apostrophes: Welsh elides ("mae'r", "i'r") and the function word is the first part.
    tokens = [t.lower() for t in _LETTERS.findall(text)]
    if not tokens:
        return "unknown", 0.0, 0.0
    en = sum(1 for t in tokens if t in _ENGLISH_WORDS) / len(tokens)
    cy = sum(1 for t in tokens if t in _WELSH_WORDS) / len(tokens)
    if len(tokens) < _MIN_TOKENS_FOR_LANGUAGE:
        return ("cy" if cy > en and cy > 0 else "en"), en, cy
    if cy > en:
        return "cy", en, cy
    if en >= _ENGLISH_MIN_RATIO:
        return "en", en, cy
    return "unknown", en, cy


# --------------------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------------------


def _warn(output: ReaderOutput, message: str) -> None:
    if message not in output.warnings:  # analyse may run twice on one output
        output.warnings.append(message)


def analyse(output: ReaderOutput, *, today: datetime.date | None = None) -> DocumentMetadata:
    """Work out a document's metadata from a reader's output.

    Findings that need attention are appended to ``output.warnings``: a review date in the past, an approval
    more than three years old with no review date, no date at all, and text that does not look English.
    ``today`` is injectable so tests (and re-runs of old batches) are reproducible.
    """
    today = today or datetime.date.today()
    text = output.text
    headings = [text[b.start : b.end] for b in output.blocks if b.kind == "heading"]
    meta = DocumentMetadata(title=_title(output), headers=list(output.headers), word_count=count_words(text))

    scores = score_policy_types(meta.title, headings, text)
    meta.policy_type, meta.policy_type_confidence = _policy_type(scores)

    found: list[_FoundDate] = []
    for source in [*output.headers, text]:
        found.extend(_dates_in(source))
    chosen = _choose_date(found)
    if chosen is None:
        _warn(output, "no review or approval date was found: check when the policy was last reviewed")
    else:
        meta.review_date = chosen.date.isoformat()
        meta.review_date_kind = chosen.kind
        if chosen.kind == "review":
            meta.out_of_date = chosen.period_end < today
            if meta.out_of_date:
                _warn(output, f"review date {chosen.human()} is in the past: the policy may be out of date")
        else:
            end = chosen.period_end
            try:
                expires = end.replace(year=end.year + _APPROVAL_VALID_YEARS)
            except ValueError:  # 29 February
                expires = end.replace(year=end.year + _APPROVAL_VALID_YEARS, day=28)
            meta.out_of_date = expires < today
            if meta.out_of_date:
                _warn(
                    output,
                    f"{chosen.kind} {chosen.human()}, more than {_APPROVAL_VALID_YEARS} years ago, and no next review "
                    "date was found: the policy may be out of date",
                )

    meta.version = _version([*output.headers, meta.title, text[:3000], text])

    meta.language, _en, cy = _language(text)
    if meta.language == "cy":
        _warn(output, "the text looks Welsh: needs manual review (the indicators are matched in English)")
    elif meta.language == "unknown":
        _warn(output, "the language of the text could not be recognised as English: needs manual review")
    elif cy >= _WELSH_PART_RATIO:
        _warn(output, "part of the text looks Welsh (a bilingual document?): Welsh passages need manual review")
    return meta

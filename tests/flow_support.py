"""Shared helpers for the orchestration tests: a small, fast, deterministic matcher and generated submissions.

The real matcher needs the MiniLM model (seconds to load) and a trained file; the orchestration tests are about
flows, caching and outputs, so they use a matcher with the same classes (``Matcher``, ``EvidenceModel``,
``DecisionModel``) fitted on synthetic features, over an encoder that hashes words into vectors instead of
running a network. ``install()`` makes the flows use it; it also works in a subprocess (see
``tests/test_cli_flows.py``).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.catalogue import load_catalogue
from pipeline.config import Settings
from pipeline.embed import Encoder
from pipeline.match import DECISION_FEATURES, PASSAGE_FEATURES, DecisionModel, EvidenceModel, Matcher

DIM = 384
FAKE_MODEL_ID = "hashing-test-encoder@1"


class HashingEncoder(Encoder):
    """Bag-of-words vectors from word hashes: similar wording gives similar vectors; no model is loaded.

    Remembers vectors in memory like the real encoder's cache, so tests can count the texts actually encoded.
    """

    calls = 0  # texts run through the "model" in this process, across instances (tests count work with it)
    _lock = threading.Lock()

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, None)

    def _run_model(self, texts: list[str]) -> np.ndarray:
        with HashingEncoder._lock:
            HashingEncoder.calls += len(texts)
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                h = int.from_bytes(hashlib.blake2b(word.strip(".,;:()").encode(), digest_size=4).digest(), "little")
                out[row, h % DIM] += 1.0
            norm = np.linalg.norm(out[row])
            out[row] = out[row] / norm if norm else out[row]
        return out


def fitted_models(areas: list[str]) -> tuple[EvidenceModel, DecisionModel]:
    """Evidence and decision models fitted on synthetic rows (deterministic)."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(400, len(PASSAGE_FEATURES))).astype(np.float32)
    evidence = EvidenceModel().fit(x, (x[:, 0] > 0.3).astype(np.int64))
    d = rng.uniform(size=(300, len(DECISION_FEATURES))).astype(np.float32)
    labels = np.where(d[:, 0] > 0.66, "met", np.where(d[:, 0] > 0.33, "partial", "missing"))
    area_rows = [areas[i % len(areas)] for i in range(len(d))]
    decision = DecisionModel(areas).fit(d, area_rows, list(labels))
    return evidence, decision


def build_fake_matcher(settings: Settings) -> Matcher:
    """A real ``Matcher`` over the real catalogue with the hashing encoder and synthetic models."""
    catalogue = load_catalogue(settings.catalogue_path)
    evidence, decision = fitted_models(list(catalogue.areas))
    return Matcher(
        catalogue,
        HashingEncoder(settings),
        evidence,
        decision,
        evidence_per_indicator=settings.evidence_per_indicator,
    )


def install() -> None:
    """Make ``pipeline.flows`` use the fake matcher in this process."""
    from pipeline import flows

    flows.use_matcher_source(flows.MatcherSource(build=build_fake_matcher, model_id=lambda s: FAKE_MODEL_ID))


# --- generated submissions ----------------------------------------------------------------------------------

SAFEGUARDING = """# Safeguarding policy

Version 3. Next review: March 2099.

## 1. Reporting concerns

1.1 Any advocate who is worried that a person is at risk of abuse or neglect must tell the designated
safeguarding lead on the same day.

1.2 If the person is in immediate danger, call 999 before doing anything else.

## 2. Records

2.1 We record every concern, the decision taken and the reasons, and keep the record securely.
"""

CONFIDENTIALITY = """# Confidentiality policy

Next review: January 2099.

## Sharing information

We keep what people tell us confidential. We only share information without consent when someone is at
serious risk of harm, when the law requires it, or to prevent a serious crime, and we tell the person unless
that would increase the risk.

## Storage

Case records are stored on an encrypted system and paper notes are shredded after scanning.
"""

COMPLAINTS = """Complaints procedure

Anyone can complain about our service, by phone, by email or in person, and an advocate from another team
can help them do it. We acknowledge a complaint within five working days and reply in full within 28 days.
If the person is not satisfied they can ask for a review by a trustee and then go to the Local Government
and Social Care Ombudsman.
"""


def make_submission(folder: Path, *, variant: str = "", extra: str = "") -> Path:
    """A folder submission with three small policies; ``variant`` changes wording so content hashes differ."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "safeguarding.md").write_text(SAFEGUARDING + variant, encoding="utf-8")
    (folder / "confidentiality.md").write_text(CONFIDENTIALITY + variant, encoding="utf-8")
    (folder / "complaints.txt").write_text(COMPLAINTS + variant + extra, encoding="utf-8")
    return folder


def zip_folder(folder: Path, archive: Path) -> Path:
    """Zip a folder's files (flat) into ``archive``."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, path.name)
    return archive


def make_batch(root: Path) -> Path:
    """A batch: two good folder submissions, one good zip, one folder holding broken files, one broken zip."""
    batch = root / "batch"
    make_submission(batch / "acme-advocacy", variant="\nAcme.\n")
    make_submission(batch / "brook-voice", variant="\nBrook.\n")
    zip_folder(make_submission(root / "src-cedar", variant="\nCedar.\n"), batch / "cedar-advocacy.zip")
    broken = make_submission(batch / "delta-support", variant="\nDelta.\n")
    (broken / "empty.pdf").write_bytes(b"")
    (broken / "garbage.pdf").write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 4)
    (broken / "not-really.docx").write_text("plain text pretending to be a Word file", encoding="utf-8")
    (batch / "broken.zip").write_bytes(b"PK\x03\x04 this zip is truncated")
    return batch


# --- stopping a run at a chosen moment (in a subprocess: see tests/test_cli_flows.py) ------------------------

#: Where a run can be stopped: the function that starts the stage, as ``(module, name)``. Writing is stopped
#: after coverage.csv is written and before coverage.xlsx, so half of the new outputs exist.
STAGES = {
    "reading": ("pipeline.flows", "ingest"),
    "scoring": ("pipeline.flows", "score_documents"),
    "writing": ("pipeline.report", "write_xlsx_atomic"),
}


def signal_during_stage(stage: str, signame: str, to: str, record: str | None = None) -> None:
    """Send ``signame`` the first time ``stage`` starts in this process, then let the stage go on for a moment.

    ``to``: ``self`` (``kill PID``); ``group``, this process's group (``timeout``, Ctrl+C in a terminal; start the
    process in a session of its own); ``service``, this process and the embedded Prefect server together (a
    service manager stopping every process of the service). ``record``: a file to write the embedded server's
    pid and session, and this process's session, into (JSON) just before the signal.
    """
    import importlib

    module_name, name = STAGES[stage]
    module = importlib.import_module(module_name)
    real: Callable[..., Any] = getattr(module, name)
    fired = threading.Event()

    def staged(*args: Any, **kwargs: Any) -> Any:
        if not fired.is_set():
            fired.set()
            if record:
                Path(record).write_text(json.dumps(_server_facts()), encoding="utf-8")
            _send(getattr(signal, signame), to)
            # The signal is handled in the main thread, which may be this one: the stage is stopped meanwhile.
            time.sleep(2)
        return real(*args, **kwargs)

    setattr(module, name, staged)


def _server_pid() -> int:
    """The embedded Prefect server's pid (the run is past its start, so there is one)."""
    from prefect.server.api.server import SubprocessASGIServer

    process = SubprocessASGIServer._instances[None].server_process
    assert process is not None
    return process.pid


def _server_facts() -> dict[str, int]:
    pid = _server_pid()
    return {"server_pid": pid, "server_sid": os.getsid(pid), "own_sid": os.getsid(0)}


def _send(signum: int, to: str) -> None:
    if to == "group":
        os.killpg(0, signum)
    elif to == "service":
        os.kill(_server_pid(), signum)
        os.kill(os.getpid(), signum)
    else:
        os.kill(os.getpid(), signum)

"""The program API: typed parameters in, JSON out, and errors that say what was wrong.

The tabs' own events return HTML and galleries for the page; these endpoints are for scripts
(``gradio_client``, or plain HTTP). Each one calls ``UniNoteService`` and turns its plain values
into JSON-ready dicts:

- ``/neighbours``: the neighbours of a corpus note, by id, under the served version or any other
  registered ``version`` (searched read-only beside the served one, as side by side does);
- ``/neighbours_of_upload``: the neighbours of an uploaded note (photos, title, body);
- ``/next_pair`` and ``/grade``: the signed-in annotator's next pair, and a grade for it;
- ``/versions``: the model versions the store knows, newest first.

A refused request (unknown id, a dim the model does not serve, a grade of 2.7, nobody signed in)
raises ``gr.Error`` with the service's sentence, which ``gradio_client`` raises as ``AppError``
with that message. The annotator is whoever the request is signed in as (``launch(auth=...)``);
it is never a parameter. ``register(service)`` adds them all inside the app's ``gr.Blocks``.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypedDict

import gradio as gr  # module level: Gradio resolves the endpoints' string type hints here

from app.auth import annotator_of
from uninote.embeddings import GRANULARITIES, QUERY_MODALITIES
from uninote.errors import UniNoteError
from uninote.service import STRATEGIES, SearchResult, UniNoteService

# The endpoints' types: Gradio turns them into the JSON schema that /gradio_api/info and
# ``Client.view_api()`` show.
Granularity = Literal[GRANULARITIES]
Modality = Literal[QUERY_MODALITIES]
Strategy = Literal[STRATEGIES]


class NeighbourJSON(TypedDict):
    note_id: str
    rank: int
    score: float
    title: str


class SearchJSON(TypedDict):
    query: str  # the note id, or the upload's id
    model_version: str
    latency_ms: float  # the search alone, on the server
    settings: dict[str, Any]  # k, dim, granularity, modality, strategy as searched
    neighbours: list[NeighbourJSON]


class PairJSON(TypedDict, total=False):  # empty when nothing is left to grade
    task_id: int
    query_id: str
    candidate_id: str
    query_title: str
    candidate_title: str
    rank: int | None
    dim: int | None
    granularity: str | None
    strategy: str | None
    left: int | None  # pairs still open for this annotator


class JudgmentJSON(TypedDict):
    id: int
    annotator: str
    query_id: str
    candidate_id: str
    grade: int
    comment: str | None


class VersionJSON(TypedDict):
    version: str
    parent: str | None
    corpus: str | None
    created_at: float
    served: bool
    metrics: dict[str, Any]


@contextmanager
def _reasons():
    """Refusals from the service come back to the caller as ``gr.Error`` with their message."""
    try:
        yield
    except UniNoteError as exc:
        raise gr.Error(str(exc), print_exception=False) from None


def _uploaded_bytes(photos) -> list[bytes]:
    """The bytes of each photo a client uploaded; a path that Gradio did not receive as an upload
    (a server file named in the request) is refused before it is opened."""
    from gradio.utils import get_upload_folder

    folder = Path(get_upload_folder()).resolve()
    out = []
    for i, photo in enumerate(photos or [], 1):
        path = photo.get("path") if isinstance(photo, dict) else getattr(photo, "path", None)
        resolved = Path(path).resolve() if isinstance(path, str) and path else None
        if resolved is None or not resolved.is_relative_to(folder) or not resolved.is_file():
            raise UniNoteError(f"photo {i} is not an uploaded file: send each photo with "
                               "gradio_client.handle_file(path)")
        out.append(resolved.read_bytes())
    return out


def _search_json(query_id: str, result: SearchResult) -> SearchJSON:
    return {"query": query_id, "model_version": result.version,
            "latency_ms": round(result.latency_ms, 3), "settings": result.settings,
            "neighbours": [{"note_id": n.note_id, "rank": n.rank, "score": n.score, "title": n.title}
                           for n in result.neighbours]}


def _pair_json(service: UniNoteService, who: str, task) -> PairJSON:
    if task is None:
        return {}
    return {"task_id": task.id, "query_id": task.query_id, "candidate_id": task.candidate_id,
            "query_title": service.note(task.query_id).title,
            "candidate_title": service.note(task.candidate_id).title,
            "rank": task.rank, "dim": task.dim, "granularity": task.granularity,
            "strategy": task.strategy, "left": service.queue_left(who)}


def _version_json(version, served: str | None) -> VersionJSON:
    return {"version": version.version, "parent": version.parent, "corpus": version.corpus,
            "created_at": version.created_at, "served": version.version == served,
            "metrics": version.metrics}


def register(service: UniNoteService) -> None:
    """Add the program endpoints to the ``gr.Blocks`` being built."""

    def ready() -> None:
        if not service.ready:
            raise gr.Error(f"not ready yet: {service.status}", print_exception=False)

    def signed_in(request: gr.Request) -> str:
        who = annotator_of(request)
        if not who:
            raise gr.Error("not signed in: grading needs a login (start the app with "
                           "UNINOTE_USERS='name:password' and pass auth=(name, password) to the client)",
                           print_exception=False)
        ready()
        return who

    def neighbours(note_id: str, k: int = 10, dim: int | None = None, granularity: Granularity = "note",
                   modality: Modality = "note", strategy: Strategy = "exact",
                   version: str | None = None) -> SearchJSON:
        """Neighbours of the corpus note `note_id`: {query, model_version, latency_ms, settings,
        neighbours: [{note_id, rank, score, title}]}. `dim` defaults to the model's full dim;
        `version` (one of /versions) searches that model version instead of the served one,
        without switching what is served."""
        ready()
        with _reasons():
            return _search_json(note_id, service.neighbours(note_id, k=k, dim=dim, granularity=granularity,
                                                            modality=modality, strategy=strategy,
                                                            version=version or None))

    def neighbours_of_upload(photos: list[gr.FileData], title: str = "", body: str = "", k: int = 10,
                             dim: int | None = None, granularity: Granularity = "note",
                             modality: Modality = "note", strategy: Strategy = "exact") -> SearchJSON:
        """Neighbours of an uploaded note (up to 4 photos, with `gradio_client.handle_file`, plus an
        optional title and body), in the same shape as /neighbours; `query` is the upload's id."""
        ready()  # before anything is stored
        with _reasons():
            upload = service.encode_upload(_uploaded_bytes(photos), title or "", body or "")
            return _search_json(upload.upload_id, service.neighbours(
                upload, k=k, dim=dim, granularity=granularity, modality=modality, strategy=strategy))

    def next_pair(request: gr.Request) -> PairJSON:
        """The signed-in annotator's next pair: {task_id, query_id, candidate_id, query_title,
        candidate_title, rank, dim, granularity, strategy, left}, or {} when nothing is left."""
        who = signed_in(request)
        with _reasons():
            return _pair_json(service, who, service.next_pair(who))

    def grade(query_id: str, candidate_id: str, grade: int, task_id: int | None = None,
              comment: str = "", request: gr.Request = None) -> JudgmentJSON:
        """Save the signed-in annotator's grade (an integer 0-3) of `candidate_id` for `query_id`;
        returns the stored judgment {id, annotator, query_id, candidate_id, grade, comment}."""
        who = signed_in(request)
        with _reasons():
            j = service.grade(who, query_id, candidate_id, grade,
                              {"task_id": task_id, "comment": comment or None})
        return {"id": j.id, "annotator": j.annotator, "query_id": j.query_id,
                "candidate_id": j.candidate_id, "grade": j.grade, "comment": j.comment}

    def versions() -> list[VersionJSON]:
        """Model versions, newest first: {version, parent, corpus, created_at, served, metrics}."""
        ready()
        return [_version_json(v, service.served.version) for v in service.versions()]

    # Each is milliseconds of work except an upload (decoding + encoding), which stays queued.
    gr.api(neighbours, api_name="neighbours", queue=False)
    gr.api(neighbours_of_upload, api_name="neighbours_of_upload")
    gr.api(next_pair, api_name="next_pair", queue=False)
    gr.api(grade, api_name="grade", queue=False)
    gr.api(versions, api_name="versions", queue=False)

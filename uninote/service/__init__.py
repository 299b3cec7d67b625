"""The service layer between the library and the app: ``UniNoteService`` and its plain values.

``uninote.service`` knows nothing of Gradio; ``app/`` calls it. ``core`` holds the service and its
start; its methods live by concept: ``versions`` (build, load, serve, RL jobs), ``search``
(neighbours, thumbnails, uploads), ``grading`` (label queue, grades), ``review`` (agreement,
adjudication), ``maps`` (the Map tab's layouts). ``config`` holds its settings, ``folders`` the
model version folders, ``catalogue`` the catalogue's word search, ``compare`` side by side (two
settings or two model versions).
"""

from uninote.service.config import (DEMO_SFT, FASHION_HUB_ID, MAX_UPLOAD_PHOTOS, STRATEGIES,
                                    ServiceConfig, default_corpus, default_home)
from uninote.service.catalogue import CatalogueMatches
from uninote.service.core import UniNoteService
from uninote.service.types import (Comparison, Neighbour, SearchResult, ServedVersion, UploadedQuery,
                                   overlap_at_k)

__all__ = ["DEMO_SFT", "FASHION_HUB_ID", "MAX_UPLOAD_PHOTOS", "STRATEGIES", "CatalogueMatches", "Comparison",
           "Neighbour", "SearchResult", "ServedVersion", "ServiceConfig", "UniNoteService", "UploadedQuery",
           "default_corpus", "default_home", "overlap_at_k"]

"""The service layer between the library and the app: ``UniNoteService`` and its plain values.

``uninote.service`` knows nothing of Gradio; ``app/`` calls it. ``core`` holds the service,
``config`` its settings, ``folders`` the model version folders, ``maps`` the Map tab's layouts.
"""

from uninote.service.config import (DEMO_SFT, FASHION_HUB_ID, MAX_UPLOAD_PHOTOS, STRATEGIES,
                                    ServiceConfig, default_corpus, default_home)
from uninote.service.core import UniNoteService
from uninote.service.types import Neighbour, SearchResult, ServedVersion, UploadedQuery, overlap_at_k

__all__ = ["DEMO_SFT", "FASHION_HUB_ID", "MAX_UPLOAD_PHOTOS", "STRATEGIES", "Neighbour", "SearchResult",
           "ServedVersion", "ServiceConfig", "UniNoteService", "UploadedQuery", "default_corpus",
           "default_home", "overlap_at_k"]

"""UniNote web app: builds the service and the Gradio app, then launches (Spaces' app_file).

Honours GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (Gradio reads them) and the UNINOTE_* settings
described in README.md. The page is served at once; on a first run the default model version is
built in the background with progress in the console and in every tab. Once the service is ready it
runs the trainer worker as a child process (``UNINOTE_WORKER=0`` turns it off), stopped with the app.
"""

import atexit
import logging
import os
import warnings

from app.factory import build_demo, launch_settings
from app.limits import bound_malloc
from uninote.service import ServiceConfig, UniNoteService


def use_persistent_storage() -> None:
    """On Spaces with persistent storage, keep caches (the materialised Hub corpus) under /data."""
    if os.path.isdir("/data") and os.access("/data", os.W_OK):
        os.environ.setdefault("UNINOTE_CACHE", "/data/uninote/cache")
        os.environ.setdefault("HF_HOME", "/data/huggingface")


def main() -> None:
    bound_malloc()  # before the service and Gradio start their threads (app/limits.py)
    use_persistent_storage()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    warnings.filterwarnings("ignore", message=".*HTTP_422_UNPROCESSABLE_ENTITY.*")
    service = UniNoteService(ServiceConfig.from_env())
    atexit.register(service.close)
    service.start(background=True, warm=True)
    demo = build_demo(service)
    demo.launch(**launch_settings(service))


if __name__ == "__main__":
    main()

"""Editorial and media: ingest, planning, frame I/O, masks, ROI, compositing, conform (no Prefect)."""
import os

# OpenCV reads/writes EXR only when asked before it is first imported.
os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")

"""The pose library: video ingest, skeletons, pre/post-processing codecs, tracking, windowing and the
analysis pipeline. Pure numpy functions wherever possible; model runtimes are passed in."""
